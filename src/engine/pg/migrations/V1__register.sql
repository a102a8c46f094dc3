-- sip2d's register on PostgreSQL, schema 1 (docs/deploy.md).
--
-- Each table holds one kind of record as sip2d's store encodes it (a format byte, then
-- bincode), by the same key the embedded store uses: the database is the store of record
-- for every node, and `sip2d export` reads it as JSON lines. Every change is one row of
-- `commits` and the record rows it put or removed, in one transaction.

CREATE TABLE meta (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE institutions (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE patrons (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE items (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE loans (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE fees (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE holds (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE accounts (key bytea PRIMARY KEY, value bytea NOT NULL);
-- Key: patron id, time (µs), sequence number, so a patron's history is one key range.
CREATE TABLE audit (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE outbox (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE optouts (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE staff (key bytea PRIMARY KEY, value bytea NOT NULL);
-- Key: patron id, file number.
CREATE TABLE files (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE links (key bytea PRIMARY KEY, value bytea NOT NULL);
CREATE TABLE email_checks (key bytea PRIMARY KEY, value bytea NOT NULL);

-- Every committed batch of writes, numbered without a gap: each node keeps the register in
-- memory and brings it up to date from here before it decides anything. Old rows are
-- removed once every node has had time to read them (`[store] commits_kept`); a node that
-- finds a gap reloads the tables.
CREATE TABLE commits (
    seq bigint PRIMARY KEY,
    at timestamptz NOT NULL DEFAULT now(),
    node text NOT NULL,
    batch bytea NOT NULL
);
