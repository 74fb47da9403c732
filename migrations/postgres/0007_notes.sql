-- Notes an operator writes on a run or a task instance (Airflow's `setNote`): free text,
-- shown with the run or instance, kept when it is cleared.
ALTER TABLE runs ADD COLUMN note TEXT;
ALTER TABLE task_instances ADD COLUMN note TEXT;
