"""Testing a published image version: booted servers in one zone, and the checks run on them.

- `registry`: the ordered list of check modules (adding a check = one module + one line);
- `checks/`: one module per check (`NAME`, `LABEL`, `SHARED`, `run(ctx)`);
- `harness`: what a check acts with (servers, SSH, cloud APIs, its log, not applicable);
- `ledger`: every resource a run creates, deleted in dependency order at the end;
- `ssh`: the run's key pair and the `ssh` client;
- `outcomes`: how a check ends other than passing (a failed assertion; a cancel is
  cloud.cancel's `Cancelled`);
- `source`: the one server the snapshot and backup checks copy;
- `powercycle`: stopping and starting again, for the checks that do so;
- `reporting`: check events handed from worker threads to the thread that writes the rows;
- `runner`: `run_test_run(test_run_id, worker)`, the entry point of a test run;
- `orchestration`: above the single run: what to run and queue (the build's test stage,
  Re-run, a zone enabled), a version's zones in parallel, the matrix and the verdict.
"""

from __future__ import annotations
