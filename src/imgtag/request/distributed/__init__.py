"""`--engine ray`: plan on the driver, decode and ask on a Ray cluster, ingest results into the store.

Layout (one job per module; only `cluster`, `pacer_actor`, `worker` and `pipeline` import Ray, and only when
`--engine ray` is chosen, so the default engine never pays for it):

- `workfolder.py`: the work folder (local path or pyarrow filesystem URI): manifest and result shards.
- `results.py`: ingesting a result shard into the store, idempotently.
- `pacer_actor.py`: the named actor holding imgtag's Pacer, shared by every worker on one endpoint.
- `worker.py`: the Ray Data stages: decode (imgtag's preprocessing) and ask (imgtag's engine in an actor).
- `cluster.py`: connecting to a cluster, or starting a local one.
- `pipeline.py`: the Ray Data pipeline (decode -> ask), what workers may read from the driver's environment.

The run itself (discover and hash, plan, launch the pipeline, ingest while it runs) is `imgtag/app/ray_runner.py`,
beside `app/runner.py`: it is a `Run`, and no stage imports the runner.
"""
