-- A user's session stamp: every session cookie carries the stamp it was issued under, and
-- each request compares it with this column (read through the unique index on username).
-- Changing a user's role or password, or signing out, sets a new random stamp, which ends
-- every session issued before; a deleted user has no row, so their sessions end too.
-- Random rather than a counter, so a user deleted and created again under the same name
-- does not bring old cookies back to life.
ALTER TABLE users ADD COLUMN session_stamp BIGINT NOT NULL DEFAULT 0;
