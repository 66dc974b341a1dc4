"""The real-process tier: the simulator's workloads and checkers against a real
`eddy dev` process on loopback, with SIGKILL and SIGSTOP as faults
(docs/simulation.md, "Real-process tier").

- `sim/real/process.py`: the `eddy dev` child process (start, kill, pause,
  resume, stop) on one port and one scratch data folder;
- `sim/real/network.py`: real WebSockets behind the endpoint interface that
  the simulator's protocol clients (sim/clients.py) speak through;
- `sim/real/pyclient.py`: workload clients over Eddy's own Python client
  (wire/client.py);
- `sim/real/run.py`: one run, its phases and its fault schedule;
- `sim/real/checks.py`: the checks that make sense with real time, most of
  them the simulator's own checkers fed from the real run;
- `sim/real/serve.py`: `eddy dev` with one of the node's planted bugs
  (sim/bugs.py), started instead of `eddy dev` when EDDY_SIM_BUG is set.
"""
