-- Task instances whose upstreams are met but that wait for room (max_active_tasks,
-- parallelism, pools): a finishing task picks the next of its run from here, best first.
CREATE INDEX task_instances_scheduled ON task_instances (run_pk, priority_weight DESC, id) WHERE state = 'scheduled';
-- Unfinished task instances of a run: a join with thousands of upstreams checks a few of
-- these instead of all its upstreams.
CREATE INDEX task_instances_unfinished ON task_instances (run_pk, task_id)
    WHERE state IN ('none', 'scheduled', 'queued', 'running', 'up_for_retry');
