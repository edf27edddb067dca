package dev.kage.testing;

import dev.kage.config.DatabaseUrl;
import dev.kage.store.Database;
import dev.kage.store.TaskStore;

/** A migrated schema of its own on the test Postgres; {@link #close()} drops it. */
public final class DatabaseFixture implements AutoCloseable {
    private final String schema = TestServices.newSchema();
    private final Database database;

    public DatabaseFixture() {
        database = Database.open(DatabaseUrl.parse("KAGE_TEST_DATABASE_URL", TestServices.databaseUrl()), schema, "test", 4);
    }

    public String schema() {
        return schema;
    }

    public Database database() {
        return database;
    }

    public TaskStore store() {
        return new TaskStore(database);
    }

    @Override
    public void close() {
        database.close();
        TestServices.dropSchema(schema);
    }
}
