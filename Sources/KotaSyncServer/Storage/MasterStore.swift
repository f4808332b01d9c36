/// Everything the server keeps in its master database: every role a backend plays.
///
/// The master is reached through small role protocols, one per concern, so that each part of the
/// server depends only on what it uses and a second backend (PostgreSQL, for a city that outgrows
/// one machine) is a second conformance of each:
///
/// - ``SyncStore``: pushes, pulls, a replica's conflicts, the devices' reports and where partial
///   uploads live;
/// - ``ReviewStore``: the review queue and reviewers' decisions;
/// - ``CredentialStore``: tokens, staff accounts and sessions;
/// - ``AuditStore``: the hash-chained audit log;
/// - ``OverviewStore``: what the dashboard shows (overview, data browser, a row's history);
/// - ``TransferStore``: push and pull files carried without a network.
///
/// `MasterStore` is all of them together: what ``SyncServer`` wires and what ``MasterStores``
/// opens. Every method is durable on return: a push that returns has been committed with a full
/// sync. ``SQLiteMasterStore`` is the embedded backend.
public typealias MasterStore = SyncStore & ReviewStore & CredentialStore & AuditStore & OverviewStore & TransferStore
