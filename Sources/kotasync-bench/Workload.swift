import Foundation
import KotaSyncCore

/// The workload's seeded generator.
typealias SeededGenerator = SplitMix64

/// The benchmark's clinic schema and its realistic, deterministic data.
enum ClinicData {
    static let patientsDDL =
        "CREATE TABLE patients (id TEXT PRIMARY KEY, nik TEXT, name TEXT, birth_date TEXT, village TEXT, updated_at TEXT)"
    static let visitsDDL = """
        CREATE TABLE visits (id TEXT PRIMARY KEY, patient_id TEXT, clinic TEXT, visit_date TEXT, diagnosis TEXT, \
        notes TEXT, updated_at TEXT)
        """
    static let tables = ["patients", "visits"]
    static let columns = [
        ["id", "nik", "name", "birth_date", "village", "updated_at"],
        ["id", "patient_id", "clinic", "visit_date", "diagnosis", "notes", "updated_at"],
    ]
    /// Columns an update may change (besides updated_at), by index in ``columns``.
    static let editable = [[1, 2, 3, 4], [2, 3, 4, 5]]

    static let firstNames = [
        "Siti", "Budi", "Dewi", "Agus", "Rina", "Andi", "Sri", "Joko", "Nur", "Putri", "Rizky", "Fitri", "Hendra",
        "Yuni", "Bambang", "Lestari", "Dedi", "Wulan", "Ahmad", "Indah", "Teguh", "Ratna", "Fajar", "Maya",
    ]
    static let lastNames = [
        "Santoso", "Lestari", "Br Ginting", "Sitepu", "Nasution", "Harahap", "Siregar", "Lubis", "Tarigan", "Sembiring",
        "Purba", "Saragih", "Hasibuan", "Pane", "Rangkuti", "Wijaya", "Kurniawan", "Hidayat", "Pratama", "Saputra",
    ]
    static let villages = [
        "Kartini", "Pekan Binjai", "Satria", "Setia", "Tangsi", "Jati Karya", "Jati Makmur", "Kebun Lada",
        "Cengkeh Turi",
        "Nangka", "Tanah Tinggi", "Mencirim", "Sumber Karya", "Timbang Langkat", "Rambung Barat", "Tanah Merah",
        "Bhakti Karya", "Suka Ramai", "Limau Sundai", "Paya Roba",
    ]
    static let icd10 = [
        "J06.9", "A09", "I10", "E11.9", "K30", "M79.1", "R50.9", "J00", "L30.9", "B35.4", "K29.7", "N39.0", "H10.9",
        "A01.0", "J45.9", "O80", "Z00.0", "R51", "M54.5", "K02.9",
    ]
    static let phrases = [
        "Pasien datang dengan keluhan", "demam sejak tiga hari", "batuk berdahak", "nyeri kepala", "diberikan obat",
        "kontrol ulang minggu depan", "tekanan darah stabil", "dianjurkan banyak minum air", "rujuk ke rumah sakit",
        "edukasi pola makan", "kondisi membaik", "gula darah tinggi", "istirahat cukup",
    ]

    static func uuid(_ rng: inout SeededGenerator) -> String {
        var bytes = (0..<16).map { _ in UInt8.random(in: 0...255, using: &rng) }
        bytes[6] = bytes[6] & 0x0F | 0x40
        bytes[8] = bytes[8] & 0x3F | 0x80
        return UUID(bytes: bytes).uuidString.lowercased()
    }

    static func nik(_ rng: inout SeededGenerator) -> String {
        "1275" + (0..<12).map { _ in String(Int.random(in: 0...9, using: &rng)) }.joined()
    }

    static func date(_ rng: inout SeededGenerator, years: ClosedRange<Int>) -> String {
        String(
            format: "%04d-%02d-%02d", Int.random(in: years, using: &rng), Int.random(in: 1...12, using: &rng),
            Int.random(in: 1...28, using: &rng))
    }

    static func timestamp(_ rng: inout SeededGenerator) -> String {
        date(&rng, years: 2026...2026)
            + String(
                format: "T%02d:%02d:%02dZ", Int.random(in: 0...23, using: &rng), Int.random(in: 0...59, using: &rng),
                Int.random(in: 0...59, using: &rng))
    }

    static func notes(_ rng: inout SeededGenerator) -> String {
        let target = Int.random(in: 40...150, using: &rng)
        var text = ""
        while text.count < target { text += (text.isEmpty ? "" : ", ") + phrases.randomElement(using: &rng)! }
        return String(text.prefix(target))
    }

    /// A value for column `column` of `table`.
    static func value(table: Int, column: Int, _ rng: inout SeededGenerator, clinic: String, patients: [String])
        -> SQLValue
    {
        switch (table, columns[table][column]) {
        case (_, "id"): .text(uuid(&rng))
        case (_, "nik"): .text(nik(&rng))
        case (_, "name"): .text("\(firstNames.randomElement(using: &rng)!) \(lastNames.randomElement(using: &rng)!)")
        case (_, "birth_date"): .text(date(&rng, years: 1940...2025))
        case (_, "village"): .text(villages.randomElement(using: &rng)!)
        case (_, "updated_at"): .text(timestamp(&rng))
        case (_, "patient_id"): .text(patients.randomElement(using: &rng) ?? uuid(&rng))
        case (_, "clinic"): .text(clinic)
        case (_, "visit_date"): .text(date(&rng, years: 2024...2026))
        case (_, "diagnosis"): .text(icd10.randomElement(using: &rng)!)
        case (_, "notes"): .text(notes(&rng))
        default: .null
        }
    }

    static func row(table: Int, _ rng: inout SeededGenerator, clinic: String, patients: [String]) -> [SQLValue] {
        columns[table].indices.map { value(table: table, column: $0, &rng, clinic: clinic, patients: patients) }
    }

    static func insertSQL(_ table: Int) -> String {
        "INSERT INTO \(tables[table]) VALUES (\(columns[table].map { _ in "?" }.joined(separator: ", ")))"
    }
}

/// One local operation of the workload.
enum Operation {
    case insert(table: Int, row: [SQLValue])
    case update(table: Int, key: SQLValue, columns: [(Int, SQLValue)])
    case delete(table: Int, key: SQLValue)

    func apply(to db: RawDatabase) throws {
        switch self {
        case .insert(let t, let row):
            try db.run(ClinicData.insertSQL(t), row)
        case .update(let t, let key, let columns):
            let set = columns.map { "\(ClinicData.columns[t][$0.0]) = ?" }.joined(separator: ", ")
            try db.run("UPDATE \(ClinicData.tables[t]) SET \(set) WHERE id = ?", columns.map(\.1) + [key])
        case .delete(let t, let key):
            try db.run("DELETE FROM \(ClinicData.tables[t]) WHERE id = ?", [key])
        }
    }
}

/// The workload's parameters.
struct WorkloadShape {
    var patients = 10_000
    var visits = 20_000
    var replicas = 20
    var ops = 5_000
    var batch = 100
    var hotSet = 200
    var seed: UInt64 = 2026
}

/// Makes the seeded master rows and each replica's offline operations.
struct Workload {
    let shape: WorkloadShape
    let seedPatients: [String]
    let seedVisits: [String]

    init(shape: WorkloadShape) {
        self.shape = shape
        var rng = SeededGenerator(seed: shape.seed)
        seedPatients = (0..<shape.patients).map { _ in ClinicData.uuid(&rng) }
        seedVisits = (0..<shape.visits).map { _ in ClinicData.uuid(&rng) }
    }

    /// Writes the seed rows into `db` (which has the tables) in one transaction.
    func seed(_ db: RawDatabase) throws {
        var rng = SeededGenerator(seed: shape.seed &+ 1)
        try db.execute("BEGIN")
        for id in seedPatients {
            var row = ClinicData.row(table: 0, &rng, clinic: "dinkes", patients: [])
            row[0] = .text(id)
            try db.run(ClinicData.insertSQL(0), row)
        }
        for id in seedVisits {
            var row = ClinicData.row(table: 1, &rng, clinic: "clinic-00", patients: seedPatients)
            row[0] = .text(id)
            try db.run(ClinicData.insertSQL(1), row)
        }
        try db.execute("COMMIT")
    }

    /// Replica `index`'s operations: 70 % inserts (40 % patients, 60 % visits), 25 % updates (a
    /// fifth of them to the shared hot set), 5 % deletes of rows it created itself.
    func operations(replica index: Int) -> [Operation] {
        var rng = SeededGenerator(seed: shape.seed &+ 1000 &+ UInt64(index))
        let clinic = String(format: "clinic-%02d", index + 1)
        var own: [[String]] = [[], []]
        let seeded = [seedPatients, seedVisits]
        var ops: [Operation] = []
        ops.reserveCapacity(shape.ops)
        while ops.count < shape.ops {
            let roll = Double.random(in: 0..<1, using: &rng)
            if roll < 0.70 {
                let t = Double.random(in: 0..<1, using: &rng) < 0.4 ? 0 : 1
                let row = ClinicData.row(table: t, &rng, clinic: clinic, patients: own[0] + seedPatients.prefix(50))
                if case .text(let id) = row[0] { own[t].append(id) }
                ops.append(.insert(table: t, row: row))
            } else if roll < 0.95 || own.allSatisfy(\.isEmpty) {
                let t = Int.random(in: 0...1, using: &rng)
                let key: String
                if Double.random(in: 0..<1, using: &rng) < 0.2 {
                    key = seeded[t][Int.random(in: 0..<min(shape.hotSet, seeded[t].count), using: &rng)]
                } else if !own[t].isEmpty && Bool.random(using: &rng) {
                    key = own[t].randomElement(using: &rng)!
                } else {
                    key =
                        seeded[t][Int.random(in: min(shape.hotSet, seeded[t].count - 1)..<seeded[t].count, using: &rng)]
                }
                let column = ClinicData.editable[t].randomElement(using: &rng)!
                let updatedAt = ClinicData.columns[t].count - 1
                ops.append(
                    .update(
                        table: t, key: .text(key),
                        columns: [
                            (
                                column,
                                ClinicData.value(table: t, column: column, &rng, clinic: clinic, patients: own[0])
                            ),
                            (updatedAt, .text(ClinicData.timestamp(&rng))),
                        ]))
            } else {
                let t = own[0].isEmpty ? 1 : (own[1].isEmpty ? 0 : Int.random(in: 0...1, using: &rng))
                let i = Int.random(in: 0..<own[t].count, using: &rng)
                ops.append(.delete(table: t, key: .text(own[t].remove(at: i))))
            }
        }
        return ops
    }
}
