-- Schema 2: what the register keeps of each terminal between its connections, so that a
-- kiosk is treated the same on every node (docs/deploy.md).

-- Key: the terminal's login. Its wrong PINs in the current window (the per-terminal budget).
CREATE TABLE pin_windows (key bytea PRIMARY KEY, value bytea NOT NULL);
-- Key: the terminal's login, NUL, the address it connected from. The last change it asked
-- for from there and the receipt it was answered from: a retry on any node is answered so.
CREATE TABLE last_changes (key bytea PRIMARY KEY, value bytea NOT NULL);
