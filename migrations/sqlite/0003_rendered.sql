-- The templates a try rendered (secrets masked), for the task instance's page.
ALTER TABLE task_tries ADD COLUMN rendered TEXT;
