"""What the tests share and is not a fixture: servers, the README's blocks, a Sentinel
topology, a worker with extra functions, and waiting on a condition with a deadline."""
