"""The Dask cluster a grading run uses (grader/autograde.py): started while the coordinator prepares, and
watched for workers that leave it mid-run.

  start_client  the cluster at a scheduler's address, or a local one whose workers are threads of this process
                (each grades one submission at a time), with Dask's housekeeping made quiet (QUIET_CLUSTER;
                quiet_cluster_environment for the processes of a cluster started by other means)
  Starting      start_client and every worker's warm-up (its sandbox zygote), in a thread of its own
  WorkersLost   which workers left mid-run, which submissions they were grading (re-run elsewhere), and
                the scratch folders they left (swept)
"""

import os

from grader.execute import STARTED, sweep_stale_scratch, warm_up


# Dask's housekeeping, made quiet: it shares the cores with the students' kernels, and at Dask's defaults it took
# 4-6% of a core per process, all the time (measured while grading, with worker processes: each worker 0.06 CPU
# seconds a second, the coordinator 0.03). Nothing here reads what it produces: no dashboard, no memory limit.
QUIET_CLUSTER = {
    "distributed.worker.profile.enabled": False,  # a sample of the running task's stack every 10 ms (dashboard)
    "distributed.admin.tick.interval": "1s",  # how often each event loop checks itself for stalls (20 ms)
    "distributed.admin.system-monitor.interval": "5s",  # CPU, memory and network readings (500 ms)
    "distributed.scheduler.work-stealing": False,  # rebalancing every 100 ms: tasks queue on the scheduler anyway
}


def quiet_cluster_environment():
    """QUIET_CLUSTER as the environment variables Dask reads, for the scheduler and workers of a cluster started
    by other means (`dask scheduler`, `dask worker`, dask-jobqueue's job script): DASK_DISTRIBUTED__WORKER__..."""
    return {"DASK_" + key.upper().replace(".", "__").replace("-", "_"): str(value) for key, value in QUIET_CLUSTER.items()}


def start_client(scheduler=None, workers=None):
    """A Dask client: the cluster at `scheduler`, or a local one of `workers` (default: one per core).

    A local cluster's workers are threads of this process, one submission at a time each: a worker only
    orchestrates (the grading runs in the sandboxed child processes of its zygote, grader/sandbox.py), and worker
    processes cost what a small class cannot pay back: 0.6 s of CPU each to start (Python, Dask), 0.2-0.5 s to
    stop (measured: nbgrader's docs course, 20 submissions on 2 cores, 23.5 s with worker processes, 21.9 s with
    threads). A cluster elsewhere (`scheduler`) has worker processes, as `dask worker` starts them."""
    import dask
    from dask.distributed import Client, LocalCluster

    if scheduler:
        return Client(scheduler, timeout="30s"), None
    with dask.config.set(QUIET_CLUSTER):
        cluster = LocalCluster(n_workers=workers or os.cpu_count(), threads_per_worker=1, processes=False,
                               dashboard_address=None, memory_limit=0, silence_logs=40)
        return Client(cluster), cluster


def workers_per_process(client):
    """How many of the cluster's workers share one process (all of a local cluster's; 1 on a real cluster)."""
    pids = list(client.run(os.getpid).values())
    return max(pids.count(pid) for pid in pids) if pids else 1


def warm_workers(client, clean=False):
    """warm_up on every worker of `client`'s cluster: one zygote for each worker of each process."""
    client.run(warm_up, clean=clean, zygotes=workers_per_process(client))


class Starting:
    """start_client, then warm_up on every worker, in a thread of its own: the coordinator prepares meanwhile."""

    def __init__(self, scheduler, workers, clean=False):
        from concurrent.futures import ThreadPoolExecutor

        self.pool = ThreadPoolExecutor(1, thread_name_prefix="grader-cluster-start")
        self.future = self.pool.submit(self.start, scheduler, workers, clean)
        self.pool.shutdown(wait=False)

    @staticmethod
    def start(scheduler, workers, clean):
        own_client, cluster = start_client(scheduler, workers)
        try:
            warm_workers(own_client, clean)
        except BaseException:
            own_client.close()
            if cluster:
                cluster.close()
            raise
        return own_client, cluster

    def result(self):
        """(client, local cluster or None), once started and warmed up."""
        return self.future.result()

    def close(self):
        """Stop what was started (the run ended before it began)."""
        try:
            own_client, cluster = self.result()
        except Exception:
            return
        own_client.close()
        if cluster:
            cluster.close()


class WorkersLost:
    """Workers that left the cluster during a run, and what that cost: from the scheduler's events, the
    "remove-worker" event (topic "all": the worker, the tasks it held) and each task's start, which the
    worker announces (grader/execute.py: announce_start, topic STARTED). A submission that had started on a
    lost worker was graded again from the start elsewhere (re-run); one it only held was sent elsewhere.
    Each removal may also leave a scratch folder on the lost worker's machine (its owner killed mid-grading):
    the report sweeps them from the machines of the workers that remain (grader/execute.py)."""

    def __init__(self, client):
        self.client, self.events, self.started, self.topics = client, [], [], []
        for topic, into in (("all", self.events), (STARTED, self.started)):
            try:
                client.subscribe_topic(topic, lambda event, into=into: into.append(event[1]))
                self.topics.append(topic)
            except Exception:  # (a scheduler that does not publish events: nothing to report)
                pass

    def report(self, by_key):
        """The lines for the end of the run: none, or one when workers were lost ("worker lost; N submission(s)
        re-run on other workers: ...")."""
        removals = [e for e in list(self.events) if isinstance(e, dict) and e.get("action") == "remove-worker"
                    and (not e.get("expected") or set(e.get("processing-tasks") or ()) & set(by_key))]
        if not removals:
            return []
        lost = {str(e.get("worker")) for e in removals}
        started = {(str(s.get("key")), str(s.get("worker"))) for s in list(self.started) if isinstance(s, dict)}
        held = {k for e in removals for k in e.get("processing-tasks") or () if k in by_key}
        rerun = {k for k in held if any((k, worker) in started for worker in lost)}
        if STARTED not in self.topics:  # (no start events to tell them apart: count all it held)
            rerun = held

        def names(keys):
            return ", ".join(sorted(f"{by_key[k]['assignment']}/{by_key[k]['student']}" for k in keys))

        try:
            swept = sum(len(folders) for folders in self.client.run(sweep_stale_scratch).values())
        except Exception as error:
            swept = f"none ({type(error).__name__}: the next run sweeps them)"
        waiting = held - rerun
        waiting = f"; {len(waiting)} held there had not started: sent to other workers ({names(waiting)})" if waiting else ""
        return [f"worker lost; {len(rerun)} submission(s) re-run on other workers: {names(rerun) or 'none'}{waiting}. "
                f"{len(lost)} worker(s) left the cluster mid-run ({', '.join(sorted(lost))}); "
                f"scratch folders swept: {swept}"]

    def stop(self):
        for topic in self.topics:
            try:
                self.client.unsubscribe_topic(topic)
            except Exception:
                pass
