import Testing

extension Trait where Self == ConditionTrait {
    /// On a suite that needs PostgreSQL: it runs unless the run leaves the PostgreSQL suites out
    /// with `KOTASYNC_SKIP_POSTGRES=1`. Without that, a machine without PostgreSQL fails the
    /// suite with a message that says how to get one (``PostgresCluster/shared()``).
    public static var postgres: Self {
        .disabled(if: PostgresCluster.skipRequested, "KOTASYNC_SKIP_POSTGRES=1 leaves the PostgreSQL suites out")
    }
}
