"""What tests share besides fixtures: the CLI runner, the test variant, the fake engine, container and tag tracking."""
