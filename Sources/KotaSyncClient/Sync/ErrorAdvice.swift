/// What an operator should do about a failed sync, by error code: `kotasync status` shows it
/// under the last error.
public enum ErrorAdvice {
    /// The advice for a ``ReplicaError`` or server (``SyncError``) code.
    public static func advice(forCode code: String) -> String {
        switch code {
        case "server_unreachable":
            "The server could not be reached. Your changes are kept and go up with the next sync: check the network and the server address, and sync again (`kotasync sync --watch` keeps trying by itself). With no link at all, carry them on a USB stick: `kotasync export --out FILE`."
        case "unauthorized":
            "The server refused this device's token (unknown, revoked or expired). Your changes are kept. Ask the Command Center for a new device token."
        case "forbidden":
            "The token may not do this: the replica or changeset belongs to another OPD's token. Sync this replica with a token of its own OPD."
        case "replica_locked":
            "Another kotasync process was syncing this replica at the time. Nothing is wrong; sync again when it has finished."
        case "invalid_transfer_file":
            "A transfer file was damaged, changed, or not made for this replica (another OPD or device, or another cursor). Ask the Command Center for a new one; the message says which cursor it must start at."
        case "body_too_large", "changeset_too_large":
            "The changeset is larger than the server accepts. Ask the Command Center to raise `limits`, or re-initialise the replica so it learns the current limits; the changes are kept."
        case "changeset_truncated", "changeset_corrupt":
            "The changeset was damaged on the way. The next sync sends the same bytes again; nothing to do unless it keeps happening (a bad proxy or link)."
        case "unknown_table", "unknown_column", "type_mismatch", "invalid_primary_key", "constraint_violation",
            "changeset_malformed":
            "The server refused the data. Correct the rows the message names (the changes are still in the log) and sync again; the next push is built anew from the log."
        case "sequence_conflict":
            "The server already applied changes this replica numbers as new: the database was probably restored from a backup. Copy out any local changes you need and make a new replica with `kotasync init` on a new file."
        case "schema_mismatch":
            "The replica's tables do not match the server's. Make a new replica with `kotasync init` on a new file (the server's schema changed)."
        case "not_initialized":
            "This database is not a replica yet: run `kotasync init --db FILE --server URL --token TOKEN`."
        case "internal_error":
            "The server failed. Your changes are kept; the next sync sends the same changeset again. Tell the Command Center if it persists."
        case "invalid_response":
            "The server's answer was not KotaSync's protocol: check the server address (a proxy or a captive portal may be answering instead), then sync again."
        case "database_error":
            "The local database failed: check free disk space and that no program holds the file locked for long, then sync again."
        default:
            "See the message. Local changes stay in the log until the server acknowledges them."
        }
    }
}
