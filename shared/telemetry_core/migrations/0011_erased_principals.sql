-- Platform events in (FR-020): users deleted by the account service. Only the SHA-256 of the user id is
-- kept (to recognise it, not to name it). The events on EVENTS are immutable and still name the user, so a
-- rebuilt read model would bring the name back: these triggers replace an erased user by 'deleted-user'
-- on every write of a column that names a person, whatever writes it (live projection or replay).
CREATE TABLE telemetry.erased_principals (
    principal_sha256 text        PRIMARY KEY,
    erased_at        timestamptz NOT NULL DEFAULT now()
);

CREATE FUNCTION telemetry.is_erased(principal text) RETURNS boolean LANGUAGE sql STABLE AS $$
    SELECT principal IS NOT NULL AND EXISTS (
        SELECT 1 FROM telemetry.erased_principals
        WHERE principal_sha256 = encode(sha256(convert_to(principal, 'UTF8')), 'hex')
    )
$$;

CREATE FUNCTION telemetry.anonymise_erased() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_TABLE_NAME = 'alerts' THEN
        IF telemetry.is_erased(NEW.acknowledged_by) THEN NEW.acknowledged_by := 'deleted-user'; END IF;
        IF telemetry.is_erased(NEW.resolved_by) THEN NEW.resolved_by := 'deleted-user'; END IF;
    ELSE
        IF telemetry.is_erased(NEW.created_by) THEN NEW.created_by := 'deleted-user'; END IF;
        -- Nested, not AND: plpgsql would resolve NEW.revoked_by on tables that have no such column.
        IF TG_TABLE_NAME = 'api_keys' THEN
            IF telemetry.is_erased(NEW.revoked_by) THEN NEW.revoked_by := 'deleted-user'; END IF;
        END IF;
    END IF;
    RETURN NEW;
END
$$;

CREATE TRIGGER anonymise_erased BEFORE INSERT OR UPDATE ON telemetry.alerts
    FOR EACH ROW EXECUTE FUNCTION telemetry.anonymise_erased();
CREATE TRIGGER anonymise_erased BEFORE INSERT OR UPDATE ON telemetry.alert_rules
    FOR EACH ROW EXECUTE FUNCTION telemetry.anonymise_erased();
CREATE TRIGGER anonymise_erased BEFORE INSERT OR UPDATE ON telemetry.metric_definitions
    FOR EACH ROW EXECUTE FUNCTION telemetry.anonymise_erased();
CREATE TRIGGER anonymise_erased BEFORE INSERT OR UPDATE ON telemetry.api_keys
    FOR EACH ROW EXECUTE FUNCTION telemetry.anonymise_erased();
