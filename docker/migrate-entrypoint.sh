#!/bin/sh
# The migration task (docker/migrate.Dockerfile). Environment, set by the task definition
# (infra/terraform/root/main.tf, module "migrate"):
#
#	DATABASE_URL               the primary as the migration role (the RDS master user), with
#	                           sslmode=verify-full and the RDS CA bundle
#	DATABASE_PASSWORD          env:MIGRATE_DATABASE_PASSWORD, the app server's secret reference
#	MIGRATE_DATABASE_PASSWORD  the migration role's password (ECS injects it: database-master)
#	APP_DATABASE_USER          the app server's login role
#	APP_DATABASE_PASSWORD      its password (ECS injects it: the app server's database secret)
#
# Exits non-zero on the first failure: the deploy then stops before it updates the app server.
set -eu

/usr/local/bin/appserver migrate

# The app server's login role: a member of muejam_app, which migration 0005_audit.sql creates
# with DML on the API's tables and no more; its password is set again on every run, so that a
# rotated secret takes effect at the next deploy. Tables a later migration creates are granted
# to muejam_app as well (default privileges of the migration role).
PGPASSWORD=$MIGRATE_DATABASE_PASSWORD exec psql "$DATABASE_URL" --no-psqlrc --quiet \
	--set ON_ERROR_STOP=1 --set app_user="$APP_DATABASE_USER" --set app_password="$APP_DATABASE_PASSWORD" <<'SQL'
select format('create role %I login', :'app_user')
where not exists (select from pg_roles where rolname = :'app_user') \gexec
alter role :"app_user" with login nosuperuser nocreatedb nocreaterole inherit password :'app_password';
grant muejam_app to :"app_user";
alter default privileges in schema public grant select, insert, update, delete on tables to muejam_app;
alter default privileges in schema public grant usage, select on sequences to muejam_app;
SQL
