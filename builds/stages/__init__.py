"""The stages of a build, one module each, run in order by builds.pipeline.

- `registry`: the ordered list of stage modules (adding a stage = one module + one line);
- `context`: what a stage runs with (StageContext), how it fails (StageFailed; a cancel is
  cloud.cancel's Cancelled), and the heartbeat that keeps the build's lease;
- `files`: where a build's files live, and their copies in the artefact store;
- `fetch`, `customize`, `finalize`, `publish`, `test`: one module per stage, each with
  `NAME`, `NEEDS`, `run(ctx)` (reads what earlier stages recorded, returns its own outputs)
  and `outputs_exist(outputs)`. They are thin: the heavy lifting is in the Django-free
  engines builds.fetch, builds.customize, builds.finalize and in builds.publish, and in
  builds.testing for the test stage.
"""
