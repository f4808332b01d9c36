import Foundation
import KotaSyncCore
import KotaSyncServer
import KotaSyncTesting
import Testing

/// The config of the PostgreSQL store tests: two OPDs, a table with a UNIQUE column, and a table
/// with a column of every affinity.
let storeYAML = """
    name: Test
    opds:
      - id: pkm-a
        name: Puskesmas A
      - id: pkm-b
        name: Puskesmas B
    tables:
      - name: patients
        ddl: "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT UNIQUE, name TEXT NOT NULL, born INTEGER)"
      - name: vals
        ddl: "CREATE TABLE vals (id TEXT PRIMARY KEY, i INTEGER, r REAL, t TEXT, n NUMERIC, u, b BLOB)"
    """

func storeConfig(_ yaml: String = storeYAML) throws -> ServerConfig {
    try ServerConfig.parse(yaml: yaml, baseURL: FileManager.default.temporaryDirectory)
}

/// Runs `body` with `count` stores (as many servers) on one new database of the tests' PostgreSQL
/// server, whose schema is prepared for `config`; closes them afterwards.
func withStores<T: Sendable>(
    _ count: Int = 1, config: ServerConfig? = nil, _ body: ([PostgresMasterStore]) async throws -> T
) async throws -> T {
    let cluster = try await PostgresCluster.shared()
    let config = try config ?? storeConfig()
    return try await cluster.withDatabase { location in
        var stores: [PostgresMasterStore] = []
        do {
            for _ in 0..<count {
                stores.append(try await PostgresMasterStore.open(location, password: cluster.password, config: config))
            }
            let result = try await body(stores)
            for store in stores { await store.close() }
            return result
        } catch {
            for store in stores { await store.close() }
            throw error
        }
    }
}

/// Runs `body` with one store.
func withStore<T: Sendable>(config: ServerConfig? = nil, _ body: (PostgresMasterStore) async throws -> T)
    async throws -> T
{
    try await withStores(1, config: config) { try await body($0[0]) }
}
