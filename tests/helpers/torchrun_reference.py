"""Run inside the test image, where torch 2.0.1 is: read each command line of the JSON list in $TORCHRUN_CASES (see
tests/helpers/torchrun_cases.py) with torch's own torchrun functions and with train/preflight.py's model of them
(mounted at /opt/train), and print `RESULTS <json>`: the torch version, then per case what each read, or that it
refused the command line. Standard library and torch only: the image has nothing else of the host's tests."""
import contextlib
import importlib.util
import io
import json
import os
import sys

from torch.distributed.elastic.rendezvous.utils import _parse_rendezvous_config, parse_rendezvous_endpoint
from torch.distributed.run import config_from_args, get_args_parser

HANDLER_PORTS = {"c10d": 29400, "etcd": 2379, "etcd-v2": 2379}
"""The default port each rendezvous handler passes parse_rendezvous_endpoint (the static one passes -1 and then
refuses an endpoint without a port)."""


def load_preflight():
    spec = importlib.util.spec_from_file_location("preflight", "/opt/train/preflight.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


@contextlib.contextmanager
def environment(pet: dict):
    """os.environ without any PET_* but these, as torchrun would find it; restored afterwards (config_from_args
    sets OMP_NUM_THREADS)."""
    saved = dict(os.environ)
    for name in [name for name in os.environ if name.startswith("PET_")]:
        del os.environ[name]
    os.environ.update(pet)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def by_torch(argv: list, pet: dict) -> dict:
    """torch.distributed.run's reading: get_args_parser, run's --standalone, config_from_args, the handler's port."""
    with environment(pet), contextlib.redirect_stderr(io.StringIO()):
        try:
            args = get_args_parser().parse_args(argv)
            if args.standalone:
                args.rdzv_backend, args.rdzv_endpoint = "c10d", "localhost:29400"
            config, _, _ = config_from_args(args)
            host, port = parse_rendezvous_endpoint(config.rdzv_endpoint, HANDLER_PORTS.get(config.rdzv_backend, -1))
            if port == -1:
                raise ValueError(f"Port is not specified in the endpoint {config.rdzv_endpoint}")
        except SystemExit:
            return {"refused": "the parser"}
        except (ValueError, AssertionError, RuntimeError) as error:
            return {"refused": f"{type(error).__name__}: {error}"}
    # The configuration as given: LaunchConfig adds timeout=900 where none is, which the model does not claim to
    # know (the preflight's own wait is the join_timeout or timeout given, else 600 s).
    return {"nodes": [config.min_nodes, config.max_nodes], "processes": config.nproc_per_node,
            "backend": config.rdzv_backend, "endpoint": [host, port], "rank": config.rdzv_configs.get("rank"),
            "conf": _parse_rendezvous_config(args.rdzv_conf),
            "standalone": args.standalone, "script": args.training_script, "script_args": args.training_script_args}


def by_model(preflight, argv: list, pet: dict) -> dict:
    try:
        launch = preflight.parse_torchrun(argv, pet)
    except preflight.PreflightUsage as error:
        return {"refused": str(error)}
    gpus = preflight.gpu_count(os.environ, preflight.nvidia_device_files())
    return {"nodes": [launch.min_nodes, launch.max_nodes],
            "processes": preflight.local_processes(launch.nproc_per_node, gpus, os.cpu_count() or 1),
            "backend": launch.rdzv_backend, "endpoint": [launch.host, launch.port],
            "rank": launch.node_rank if launch.rdzv_backend == "static" else None, "conf": dict(launch.rdzv_conf),
            "standalone": launch.standalone, "script": launch.script, "script_args": list(launch.script_args)}


def main() -> None:
    import torch

    preflight = load_preflight()
    cases = json.loads(os.environ["TORCHRUN_CASES"])
    results = [{"name": case["name"], "torch": by_torch(case["argv"], case["env"]),
                "model": by_model(preflight, case["argv"], case["env"])} for case in cases]
    print("RESULTS " + json.dumps({"torch_version": torch.__version__, "cases": results}), flush=True)


if __name__ == "__main__":
    main()
