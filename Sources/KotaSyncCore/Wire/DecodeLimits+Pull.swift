extension DecodeLimits {
    /// What a client accepts in one pull page (and in one page of a transfer file): 64 MiB of
    /// payload and a million rows. The server builds no page larger, and refuses a config whose
    /// largest row (`limits.max_row_bytes`) could not fit in one, so every row the master can
    /// hold reaches every replica.
    ///
    /// No compression ratio: the ratio guards a server from a small body that declares a huge
    /// payload, while a page's payload is bounded by its length alone, which the decoder checks
    /// before inflating. A page of rows that compress well (a column of repeated text, a
    /// zero-filled blob) would otherwise go past any fixed ratio and never arrive.
    public static let pullPage = DecodeLimits(
        maxUncompressedBytes: 64 << 20, maxCompressionRatio: .max, maxRows: 1_000_000)
}
