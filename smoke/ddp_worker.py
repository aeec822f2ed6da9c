"""One rank of the DDP smoke check; test_ddp.py starts one such process per rank.

Run as `python ddp_worker.py --backend gloo|nccl --out DIR --timeout SECONDS --parent-pid PID` with
RANK, LOCAL_RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT in the environment. The rank records what it
observed in DIR/rank<R>.json and leaves the judging to the parent; DIR/rank<R>.heartbeat always names
the last stage it reached, so a hang can be located.

The seed article's DDP snippet cannot run as written: mp.spawn passes a rank that its main() does not
take, and no rank or world size reaches init_process_group. Here both come from the environment and
are passed to init_process_group explicitly.
"""
import argparse
import json
import os
import threading
import time
from datetime import timedelta
from pathlib import Path

TRAINING_STEPS = 20


def parse_args():
    """The launcher's arguments; the rank layout itself comes from the environment, as with torchrun."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backend", choices=["gloo", "nccl"], required=True)
    parser.add_argument("--out", type=Path, required=True, help="directory for heartbeat and result")
    parser.add_argument("--timeout", type=float, required=True, help="seconds for init_process_group")
    parser.add_argument("--parent-pid", type=int, required=True, help="exit when this process is gone")
    return parser.parse_args()


def write_json_atomically(path, payload):
    """Replace `path` in one step, so the parent never reads half a file."""
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(payload))
    os.replace(partial, path)


class Heartbeat:
    """Records the stage this rank is in, with a timestamp, for the parent's timeout diagnostic."""

    def __init__(self, path):
        self.path = path

    def beat(self, stage):
        write_json_atomically(self.path, {"stage": stage, "time": time.time()})


def exit_when_parent_dies(parent_pid):
    """Each rank runs in its own session, so nothing reaches it when pytest itself is killed: watch for that."""
    def watch():
        while os.getppid() == parent_pid:
            time.sleep(1)
        os._exit(70)
    threading.Thread(target=watch, daemon=True).start()


def all_reduce_contributions(rank, device):
    """Sum [r+1, 10(r+1)] over ranks; the parent expects [W(W+1)/2, 10 W(W+1)/2]."""
    import torch
    import torch.distributed as dist
    contribution = torch.tensor([rank + 1.0, 10.0 * (rank + 1)], device=device)
    dist.all_reduce(contribution)
    return contribution.tolist()


def broadcast_from_last_rank(rank, world_size, device):
    """The last rank sends [100, 101, 102, 103]; everyone else starts from -1s and must receive it."""
    import torch
    import torch.distributed as dist
    source = world_size - 1
    tensor = torch.arange(100.0, 104.0, device=device) if rank == source else torch.full((4,), -1.0, device=device)
    dist.broadcast(tensor, src=source)
    return tensor.tolist()


def local_shard(rank, device):
    """This rank's own samples of one shared regression problem: y = x . linspace(-1, 1, 8) + noise."""
    import torch
    generator = torch.Generator().manual_seed(100 + rank)
    inputs = torch.randn(64, 8, generator=generator)
    targets = inputs @ torch.linspace(-1, 1, 8) + 0.01 * torch.randn(64, generator=generator)
    return inputs.to(device), targets.unsqueeze(1).to(device)


def flat(tensors):
    """All given tensors as one detached 1-D tensor."""
    import torch
    return torch.cat([tensor.detach().reshape(-1) for tensor in tensors])


def same_on_every_rank(tensor, world_size):
    """all_gather the tensor and tell whether every rank holds bit-identical values."""
    import torch
    import torch.distributed as dist
    gathered = [torch.empty_like(tensor) for _ in range(world_size)]
    dist.all_gather(gathered, tensor)
    return all(torch.equal(other, gathered[0]) for other in gathered)


def global_mean(value, world_size):
    """The mean of a scalar over all ranks, so every rank reports the same loss curve."""
    import torch.distributed as dist
    total = value.detach().clone()
    dist.all_reduce(total)
    return total.item() / world_size


def train_ddp(rank, world_size, device, heartbeat):
    """Train a small MLP under DDP; record losses, steps with unequal gradients, and final parameters.

    Each rank seeds its initial weights differently, so equal replicas at the end show that DDP's
    initial broadcast and gradient averaging both worked.
    """
    import torch
    from torch import nn
    from torch.nn.parallel import DistributedDataParallel

    torch.manual_seed(rank)
    model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 1)).to(device)
    replica = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    optimizer = torch.optim.SGD(replica.parameters(), lr=0.05)
    inputs, targets = local_shard(rank, device)
    losses, gradient_mismatch_steps = [], []
    for step in range(TRAINING_STEPS):
        heartbeat.beat(f"training step {step}")
        loss = nn.functional.mse_loss(replica(inputs), targets)
        optimizer.zero_grad()
        loss.backward()
        if not same_on_every_rank(flat(p.grad for p in model.parameters()), world_size):
            gradient_mismatch_steps.append(step)
        optimizer.step()
        losses.append(global_mean(loss, world_size))
    return {"losses": losses, "gradient_mismatch_steps": gradient_mismatch_steps,
            "final_parameters": flat(model.parameters()).cpu().tolist()}


def main():
    """Join the process group, exercise collectives and DDP training, and record the results."""
    args = parse_args()
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    heartbeat = Heartbeat(args.out / f"rank{rank}.heartbeat")
    exit_when_parent_dies(args.parent_pid)
    heartbeat.beat("importing torch")
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)  # ranks share the host's cores
    device = torch.device("cpu")
    if args.backend == "nccl":
        device = torch.device("cuda", int(os.environ["LOCAL_RANK"]))
        torch.cuda.set_device(device)
    # torch 2.0.1 applies init_process_group's timeout to NCCL only with async error handling on; torchrun sets it,
    # a plain process does not, and without it a wedged NCCL rank waits forever.
    os.environ.setdefault("NCCL_ASYNC_ERROR_HANDLING", "1")
    os.environ.setdefault("TORCH_NCCL_ASYNC_ERROR_HANDLING", "1")
    heartbeat.beat("init_process_group")
    dist.init_process_group(args.backend, init_method="env://", rank=rank, world_size=world_size,
                            timeout=timedelta(seconds=args.timeout))
    result = {"rank": rank, "world_size": world_size, "backend": args.backend}
    # NCCL sets up its communicator at the first collective, not in init_process_group: a hang there reads as this.
    heartbeat.beat(f"{args.backend} init (first collective)")
    dist.barrier()
    heartbeat.beat("all_reduce")
    result["all_reduce"] = all_reduce_contributions(rank, device)
    heartbeat.beat("broadcast")
    result["broadcast"] = broadcast_from_last_rank(rank, world_size, device)
    result.update(train_ddp(rank, world_size, device, heartbeat))
    heartbeat.beat("final barrier")
    dist.barrier()  # no rank leaves while another still talks to it
    write_json_atomically(args.out / f"rank{rank}.json", result)
    heartbeat.beat("done")
    # torch 2.0.1's gloo teardown (destroy_process_group, or the same destructor at interpreter exit) sometimes never
    # returns once the peers have left: rank 0 hung there in two of four CI runs (pytorch/pytorch#75097). Every
    # result is written and every rank is past the barrier, so the process leaves without it.
    os._exit(0)


if __name__ == "__main__":
    main()
