-- Views: shared ones (owner_id NULL, loaded from rule files at start-up) and agents' personal ones (R18, R19).
CREATE SEQUENCE view_ids START 1;
CREATE TABLE views (
    id BIGINT PRIMARY KEY,
    title VARCHAR NOT NULL,
    owner_id BIGINT,
    conditions JSON NOT NULL,
    execution JSON NOT NULL,
    position INTEGER NOT NULL,
    created_at TIMESTAMP NOT NULL,
    updated_at TIMESTAMP NOT NULL
);
