-- docker-compose.yml: the login roles of the stack, created once when the database volume is
-- initialised (docker-entrypoint-initdb.d). `importer` (the image's superuser) owns the schema
-- and runs the migrations, which grant the group roles; workers log in as `worker`, the
-- dashboard, the exporter and importer-admin as `operator`. These passwords are the local
-- stack's, like POSTGRES_PASSWORD: a real deployment creates its own.
CREATE ROLE importer_worker NOLOGIN;
CREATE ROLE importer_operator NOLOGIN;
CREATE ROLE worker LOGIN PASSWORD 'worker' IN ROLE importer_worker;
CREATE ROLE operator LOGIN PASSWORD 'operator' IN ROLE importer_operator;
