/// The dashboard's languages: Bahasa Indonesia by default, English on request.
enum Language: String, Sendable, CaseIterable {
    case id, en
}

/// Every text of the dashboard, in both languages. Templates read them as `t.<key>`.
enum Strings {
    static let table: [String: (id: String, en: String)] = [
        "commandCenter": ("Pusat Komando", "Command Center"),
        "overview": ("Ringkasan", "Overview"),
        "conflicts": ("Antrean konflik", "Conflict queue"),
        "data": ("Data", "Data"),
        "audit": ("Log audit", "Audit log"),
        "tokens": ("Token", "Tokens"),
        "users": ("Pengguna", "Users"),
        "login": ("Masuk", "Log in"),
        "logout": ("Keluar", "Log out"),
        "name": ("Nama", "Name"),
        "password": ("Kata sandi", "Password"),
        "loginFailed": ("Nama atau kata sandi salah.", "Wrong name or password."),
        "loginLimited": (
            "Terlalu banyak percobaan gagal. Coba lagi nanti.", "Too many failed attempts. Try again later."
        ),
        "devices": ("Perangkat", "Devices"),
        "opd": ("OPD", "OPD"),
        "device": ("Perangkat", "Device"),
        "lastPush": ("Kirim terakhir", "Last push"),
        "lastPull": ("Ambil terakhir", "Last pull"),
        "pending": ("Tertunda", "Pending"),
        "waiting": ("Menunggu", "Waiting"),
        "refused": ("Ditolak", "Refused"),
        "lag": ("Tertinggal", "Lag"),
        "version": ("Versi aplikasi", "App version"),
        "lastError": ("Galat terakhir", "Last error"),
        "health": ("Kesehatan", "Health"),
        "healthy": ("Sehat", "Healthy"),
        "attention": ("Perlu perhatian", "Needs attention"),
        "down": ("Bermasalah", "Failing"),
        "never": ("belum pernah", "never"),
        "cityTotals": ("Total kota", "City totals"),
        "rowsIn": ("Baris", "Rows"),
        "masterVersion": ("Versi master", "Master version"),
        "changesPerDay": ("Perubahan per hari per OPD", "Changes per day per OPD"),
        "conflictsPerDay": ("Konflik per hari", "Conflicts per day"),
        "status": ("Status", "Status"),
        "table": ("Tabel", "Table"),
        "age": ("Umur", "Age"),
        "anyStatus": ("Semua status", "Any status"),
        "anyTable": ("Semua tabel", "Any table"),
        "anyOPD": ("Semua OPD", "Any OPD"),
        "anyAge": ("Kapan saja", "Any time"),
        "lastDay": ("24 jam terakhir", "Last 24 hours"),
        "lastWeek": ("7 hari terakhir", "Last 7 days"),
        "olderWeek": ("Lebih dari 7 hari", "Older than 7 days"),
        "filter": ("Saring", "Filter"),
        "kind": ("Jenis", "Kind"),
        "key": ("Kunci", "Key"),
        "column": ("Kolom", "Column"),
        "policy": ("Kebijakan", "Policy"),
        "winner": ("Master (menang)", "Master (winner)"),
        "loser": ("OPD (kalah)", "OPD (loser)"),
        "base": ("Asal", "Base"),
        "decided": ("Diputuskan", "Decided"),
        "why": ("Alasan", "Why"),
        "resolve": ("Selesaikan", "Resolve"),
        "takeLocal": ("Pakai nilai master", "Keep the master's value"),
        "takeRemote": ("Pakai nilai OPD", "Take the OPD's value"),
        "takeMerged": ("Tetapkan nilai", "Set a value"),
        "note": ("Catatan", "Note"),
        "value": ("Nilai", "Value"),
        "resolved": ("Diselesaikan", "Resolved"),
        "by": ("oleh", "by"),
        "bulkResolve": ("Selesaikan semua kasus serupa", "Resolve all identical cases"),
        "identical": ("kasus serupa menunggu", "identical cases waiting"),
        "heldRow": ("Baris yang ditahan", "Held row"),
        "related": ("Terkait dengan", "Related to"),
        "noRecords": ("Tidak ada catatan.", "No records."),
        "search": ("Cari", "Search"),
        "lastChangedBy": ("Terakhir diubah oleh", "Last changed by"),
        "history": ("Riwayat", "History"),
        "previous": ("Sebelumnya", "Previous"),
        "next": ("Berikutnya", "Next"),
        "page": ("Halaman", "Page"),
        "of": ("dari", "of"),
        "operation": ("Operasi", "Operation"),
        "replaced": ("Nilai yang diganti", "Replaced values"),
        "rowAfter": ("Baris sesudahnya", "Row after"),
        "deleted": ("(dihapus)", "(deleted)"),
        "when": ("Waktu", "When"),
        "who": ("Siapa", "Who"),
        "action": ("Tindakan", "Action"),
        "outcome": ("Hasil", "Outcome"),
        "forbidden": ("Peran Anda tidak mengizinkan tindakan ini.", "Your role does not allow this."),
        "viewerNote": (
            "Anda masuk sebagai pengamat: hanya dapat melihat.", "You are logged in as a viewer: read only."
        ),
        "create": ("Buat", "Create"),
        "revoke": ("Cabut", "Revoke"),
        "role": ("Peran", "Role"),
        "expires": ("Kedaluwarsa", "Expires"),
        "created": ("Dibuat", "Created"),
        "tokenShownOnce": ("Token baru (hanya ditampilkan sekali):", "New token (shown only once):"),
        "wib": ("WIB", "WIB"),
        "language": ("Bahasa", "Language"),
        "decisionSaved": ("Keputusan disimpan.", "Decision saved."),
        "since": ("Sejak", "Since"),
        "remove": ("Hapus", "Remove"),
        "add": ("Tambah", "Add"),
        "policy.lww": (
            "Perubahan yang lebih akhir (menurut jam hibrida) menang; nilai yang kalah disimpan di sini.",
            "The later edit (by hybrid clock) wins; the losing value is kept here."
        ),
        "policy.server-wins": (
            "Keputusan Pusat Komando menang atas perubahan OPD.", "The Command Center's decision wins over OPD edits."
        ),
        "policy.authority": ("Perubahan dari %@ menang untuk kolom ini.", "Edits by %@ win for this column."),
        "policy.manual": (
            "Master mempertahankan nilainya; nilai OPD menunggu keputusan petugas.",
            "The master keeps its value; the OPD's value waits for a reviewer."
        ),
        "policy.additive": (
            "Jumlah: kedua perubahan dihitung (asal + Δa + Δb).", "A quantity: both changes count (base + Δa + Δb)."
        ),
        "policy.update-wins": (
            "Baris tetap ada: penghapusan kalah dari perubahan yang tidak dilihatnya.",
            "The row stays: a delete loses to an edit it had not seen."
        ),
        "policy.delete-wins": (
            "Baris dihapus: perubahan yang kalah tersimpan di riwayat.",
            "The row is deleted: the losing edit is kept in the history."
        ),
    ]

    /// The strings of `language`, by key.
    static func texts(_ language: Language) -> [String: String] {
        table.mapValues { language == .id ? $0.id : $0.en }
    }
}
