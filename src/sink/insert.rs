//! The sink's inserts: RowBinary into one table at a time, at most
//! [`MAX_PARTITIONS_PER_INSERT`] day partitions per INSERT, telling an outage (the batch is
//! retried later) from rows ClickHouse refuses for their content (found by bisection and
//! returned, so only they are dead-lettered).

use super::batch::Reject;
use crate::clickhouse::{ClickHouse, ClickHouseError};
use crate::model::rows::TableRow;
use crate::model::tables::day_of;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

/// ClickHouse's default `max_partitions_per_insert_block`: one INSERT may touch at most this
/// many day partitions, so larger spans are split.
pub const MAX_PARTITIONS_PER_INSERT: usize = 100;

/// Writes rows with RowBinary inserts.
#[derive(Clone)]
pub struct Writer {
    ch: ClickHouse,
    timeout: Duration,
}

impl Writer {
    pub fn new(ch: ClickHouse, timeout: Duration) -> Self {
        Writer { ch, timeout }
    }

    /// Inserts `rows` (sorted by time) into their table, at most
    /// [`MAX_PARTITIONS_PER_INSERT`] days per INSERT. Rows ClickHouse refuses for their
    /// content are isolated by bisection and returned; everything else is in the table when
    /// this returns `Ok`.
    ///
    /// Boxed so that callers' futures are `Send` without naming the row lifetime (rustc
    /// cannot yet prove that through the generic `TableRow<'a>`).
    pub fn write<'s, 'a: 's, R: TableRow<'a>>(
        &'s self,
        rows: &'s [(usize, R)],
    ) -> Pin<Box<dyn Future<Output = Result<Vec<Reject>, ClickHouseError>> + Send + 's>> {
        Box::pin(async move {
            let mut rejects = Vec::new();
            for chunk in partition_chunks(rows) {
                self.write_bisecting(chunk, &mut rejects).await?;
            }
            Ok(rejects)
        })
    }

    async fn write_bisecting<'a, R: TableRow<'a>>(
        &self,
        rows: &[(usize, R)],
        rejects: &mut Vec<Reject>,
    ) -> Result<(), ClickHouseError> {
        let mut todo = Vec::with_capacity(32);
        todo.push(0..rows.len());
        while let Some(range) = todo.pop() {
            match self.insert(&rows[range.clone()]).await {
                Ok(()) => {}
                Err(e) if e.is_content() && range.len() == 1 => rejects.push(Reject {
                    line: rows[range.start].0,
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

    async fn insert<'a, R: TableRow<'a>>(
        &self,
        rows: &[(usize, R)],
    ) -> Result<(), ClickHouseError> {
        if rows.is_empty() {
            return Ok(());
        }
        let err = |e| self.ch.error(e);
        let mut insert = self
            .ch
            .client()
            .insert::<R::Owned>(R::TABLE.name())
            .await
            .map_err(err)?
            .with_timeouts(Some(self.timeout), Some(self.timeout));
        for (_, row) in rows {
            insert.write(row.as_value()).await.map_err(err)?;
        }
        insert.end().await.map_err(err)
    }
}

/// Splits time-sorted rows so that no chunk spans more than [`MAX_PARTITIONS_PER_INSERT`] days.
fn partition_chunks<'r, 'a, R: TableRow<'a>>(rows: &'r [(usize, R)]) -> Vec<&'r [(usize, R)]> {
    let mut chunks = Vec::new();
    let (mut start, mut days, mut last_day) = (0, 0, None);
    for (i, (_, row)) in rows.iter().enumerate() {
        let day = day_of(u64::from(row.ts()));
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
    use crate::config::RetentionConfig;
    use crate::model::{Event, EventId, EventKind, EVENT_VERSION};
    use crate::sink::batch::Decoded;
    use crate::sink::route::{Rows, Window};

    const NOW: u64 = 1_795_521_600;

    fn status(ts: u64) -> Event<'static> {
        Event {
            v: EVENT_VERSION,
            id: EventId(ts as u128),
            kind: EventKind::Status,
            ts,
            received_ms: NOW * 1000,
            waba_id: "w".into(),
            field: "messages".into(),
            ..Event::default()
        }
    }

    #[test]
    fn inserts_never_span_more_than_the_partition_limit() {
        let events: Vec<Event> = (0..250u64).map(|d| status(NOW - d * 86_400 / 2)).collect();
        let decoded = Decoded {
            events: events.into_iter().enumerate().collect(),
            ..Decoded::default()
        };
        let retention = RetentionConfig {
            message_status_days: 1000,
            ..RetentionConfig::default()
        };
        let rows = Rows::route(
            &decoded,
            &Window::new(NOW, &retention),
            &crate::sink::erased::Erased::default(),
        );
        let chunks = partition_chunks(&rows.status);
        assert_eq!(chunks.iter().map(|c| c.len()).sum::<usize>(), 250);
        for c in &chunks {
            let mut days: Vec<u64> = c.iter().map(|(_, r)| day_of(u64::from(r.ts))).collect();
            days.dedup();
            assert!(days.len() <= MAX_PARTITIONS_PER_INSERT, "{}", days.len());
        }
        assert_eq!(chunks.len(), 2);
    }
}
