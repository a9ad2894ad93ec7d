//! The sink's inserts: a table's RowBinary rows (encoded by `route`) into that table, at most
//! [`MAX_PARTITIONS_PER_INSERT`] day partitions per INSERT, telling an outage (the batch is
//! retried later) from rows ClickHouse refuses for their content (found by bisection and
//! returned, so only they are dead-lettered).

use super::batch::Reject;
use super::route::{Encoded, RowRef};
use crate::clickhouse::{quote_ident, ClickHouse, ClickHouseError};
use crate::model::rows;
use crate::model::tables::{day_of, Table};
use ::clickhouse::insert_formatted::CompressedData;
use bytes::Bytes;
use std::borrow::Cow;
use std::time::Duration;

/// ClickHouse's default `max_partitions_per_insert_block`: one INSERT may touch at most this
/// many day partitions, so larger spans are split.
pub const MAX_PARTITIONS_PER_INSERT: usize = 100;

/// Bytes gathered before a chunk of an INSERT is compressed and sent.
const SEND_CHUNK_BYTES: usize = 256 * 1024;

/// Writes encoded rows with RowBinary inserts.
#[derive(Clone)]
pub struct Writer {
    ch: ClickHouse,
    timeout: Duration,
}

impl Writer {
    pub fn new(ch: ClickHouse, timeout: Duration) -> Self {
        Writer { ch, timeout }
    }

    /// Inserts the rows of `table`, at most [`MAX_PARTITIONS_PER_INSERT`]
    /// days per INSERT. Rows ClickHouse refuses for their content are isolated by bisection
    /// and returned; everything else is in the table when this returns `Ok`.
    pub async fn write(
        &self,
        table: Table,
        rows: &Encoded,
    ) -> Result<Vec<Reject>, ClickHouseError> {
        let mut rejects = Vec::new();
        for chunk in partition_chunks(rows.rows()) {
            self.write_bisecting(table, rows, &chunk, &mut rejects)
                .await?;
        }
        Ok(rejects)
    }

    async fn write_bisecting(
        &self,
        table: Table,
        rows: &Encoded,
        chunk: &[RowRef],
        rejects: &mut Vec<Reject>,
    ) -> Result<(), ClickHouseError> {
        let mut todo = Vec::with_capacity(32);
        todo.push(0..chunk.len());
        while let Some(range) = todo.pop() {
            match self.insert(table, rows, &chunk[range.clone()]).await {
                Ok(()) => {}
                Err(e) if e.is_content() && range.len() == 1 => rejects.push(Reject {
                    line: chunk[range.start].line,
                    reason: e.message().to_string(),
                }),
                Err(e) if e.is_content() => {
                    let mid = range.start + range.len() / 2;
                    todo.push(mid..range.end);
                    todo.push(range.start..mid);
                }
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// One INSERT of `chunk`'s rows. RowBinary is positional, so the columns are named in the
    /// order the rows were encoded in (`rows::columns`).
    async fn insert(
        &self,
        table: Table,
        rows: &Encoded,
        chunk: &[RowRef],
    ) -> Result<(), ClickHouseError> {
        if chunk.is_empty() {
            return Ok(());
        }
        let err = |e| self.ch.error(e);
        let mut insert = self
            .ch
            .client()
            .insert_formatted_with(insert_sql(table))
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        let compression = self.ch.compression();
        // Compressed straight from the rows' buffer: the client's own buffered writer would
        // first copy every byte into its buffer (~8 % of the sink's CPU in a profile).
        for piece in rows.bytes_of(chunk).chunks(SEND_CHUNK_BYTES) {
            if compression != ::clickhouse::Compression::None {
                let data = CompressedData::new(piece, compression).map_err(err)?;
                insert.send_compressed(data).await.map_err(err)?;
            } else {
                insert
                    .send(Bytes::copy_from_slice(piece))
                    .await
                    .map_err(err)?;
            }
        }
        insert.end().await.map_err(err)
    }
}

fn insert_sql(table: Table) -> String {
    let columns: Vec<String> = rows::columns(table)
        .iter()
        .map(|c| quote_ident(c))
        .collect();
    format!(
        "INSERT INTO {}({}) FORMAT RowBinary",
        quote_ident(table.name()),
        columns.join(",")
    )
}

/// Splits rows so that no chunk spans more than [`MAX_PARTITIONS_PER_INSERT`] days. Rows that
/// fit stay one chunk in arrival order (their bytes one slice); only a batch spanning more
/// days than that, such as a replay of an old backlog, is sorted by time and split.
fn partition_chunks(rows: &[RowRef]) -> Vec<Cow<'_, [RowRef]>> {
    let days = rows.iter().map(|r| day_of(u64::from(r.ts)));
    let (first, last) = (days.clone().min(), days.max());
    if let (Some(first), Some(last)) = (first, last) {
        if last - first < MAX_PARTITIONS_PER_INSERT as u64 {
            return vec![Cow::Borrowed(rows)];
        }
    }
    let mut sorted = rows.to_vec();
    sorted.sort_by_key(|r| r.ts);
    sorted_chunks(&sorted)
        .into_iter()
        .map(|c| Cow::Owned(c.to_vec()))
        .collect()
}

/// Splits time-sorted rows so that no chunk spans more than [`MAX_PARTITIONS_PER_INSERT`] days.
fn sorted_chunks(rows: &[RowRef]) -> Vec<&[RowRef]> {
    let mut chunks = Vec::new();
    let (mut start, mut days, mut last_day) = (0, 0, None);
    for (i, row) in rows.iter().enumerate() {
        let day = day_of(u64::from(row.ts));
        if last_day != Some(day) {
            if days == MAX_PARTITIONS_PER_INSERT {
                chunks.push(&rows[start..i]);
                start = i;
                days = 0;
            }
            days += 1;
            last_day = Some(day);
        }
    }
    if start < rows.len() {
        chunks.push(&rows[start..]);
    }
    chunks
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: u32 = 1_795_521_600;

    #[test]
    fn inserts_never_span_more_than_the_partition_limit() {
        // 125 days, in no order: every second row is a day older than the one before.
        let rows: Vec<RowRef> = (0..250u32)
            .map(|i| RowRef::at(i as usize, NOW - (i * 7919 % 250) * 86_400 / 2))
            .collect();
        let chunks = partition_chunks(&rows);
        let mut lines: Vec<usize> = chunks
            .iter()
            .flat_map(|c| c.iter().map(|r| r.line))
            .collect();
        lines.sort_unstable();
        assert_eq!(lines, (0..250).collect::<Vec<_>>(), "every row once");
        for c in &chunks {
            let mut days: Vec<u64> = c.iter().map(|r| day_of(u64::from(r.ts))).collect();
            days.sort_unstable();
            days.dedup();
            assert!(days.len() <= MAX_PARTITIONS_PER_INSERT, "{}", days.len());
        }
        assert_eq!(chunks.len(), 2);
    }

    #[test]
    fn rows_within_the_limit_stay_one_chunk_in_arrival_order() {
        let rows: Vec<RowRef> = (0..250u32)
            .map(|i| RowRef::at(i as usize, NOW - (i * 7919 % 250) * 3_600))
            .collect();
        let chunks = partition_chunks(&rows);
        assert_eq!(chunks.len(), 1);
        assert!(matches!(chunks[0], Cow::Borrowed(_)));
        assert_eq!(*chunks[0], rows[..]);
    }

    #[test]
    fn the_insert_names_the_columns_in_encoding_order() {
        let sql = insert_sql(Table::MessageStatus);
        assert!(
            sql.starts_with("INSERT INTO `message_status`(`event_id`,"),
            "{sql}"
        );
        assert!(sql.ends_with(") FORMAT RowBinary"), "{sql}");
        assert_eq!(
            sql.matches(',').count() + 1,
            rows::columns(Table::MessageStatus).len()
        );
    }
}
