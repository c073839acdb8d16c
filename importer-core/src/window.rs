//! The sync window and lossless offset paging over it (DESIGN.md section 6).
//!
//! A run covers the members whose `last_changed` lies in `[since, until)`, with `until` frozen
//! (truncated to the second) when the run is created. Mailchimp pages by offset over a filtered
//! set with no snapshot, so a member that changes mid-run shifts every later offset. This module
//! makes paging lossless anyway:
//!
//! 1. **The window only shrinks.** `until` is in the past, so no member can *enter* the window
//!    during the run: a new or modified member gets `last_changed = now >= until`. Members can only
//!    *leave* it (modified, archived, deleted). We page in Mailchimp's insertion order (no
//!    `sort_field`), which is stable: positions can only move down, never up, and never swap.
//! 2. **Planning.** The plan job counts the window once (`T = total_items`) and enqueues one page
//!    job per `PAGE_SIZE` offsets. Pages run in parallel on any number of workers.
//! 3. **Shrink compensation.** A page job for original positions `[o, o + n)` fetches current
//!    positions `[o, o + n)`. The response's `total_items` tells how many members have left
//!    (`r = T - total_items`); a member of our range that is not in the fetched page can only have
//!    slid below `o`, by at most `r`. So the job also fetches the gap `[o - r, o)` (top down, in
//!    chunks), and repeats with the new `r` until a whole gap pass sees no further removal: with no
//!    removal during that pass, positions were frozen while it ran, and every member of our range
//!    still in the window lay inside the gap.
//!
//! Members that left the window mid-run changed, so their new `last_changed` is at or after
//! `until` and the next incremental run sends them (DESIGN.md: "in this run or the next").
//! Members fetched twice (the gap overlaps the previous page) are sent twice; the destination
//! upserts by id, so that is harmless. The job is stateless: a retry simply runs it again with the
//! same planned total.
//!
//! `since` is sent as `since - 1s`: Mailchimp's `since_last_changed` is strict by default but may
//! be inclusive; one second earlier covers `[since, …)` either way (at worst a boundary second is
//! sent twice).

use std::future::Future;

use chrono::{DateTime, Duration as ChronoDuration, Utc};
use serde::{Deserialize, Serialize};

/// Members per page job and per Mailchimp request (Mailchimp's maximum `count`).
pub const PAGE_SIZE: u64 = 1000;

/// Gap passes a page job makes before giving up as "window still shrinking" (retryable).
pub const MAX_GAP_PASSES: usize = 8;

/// The `[since, until)` window of `last_changed` a run covers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Window {
    /// Inclusive lower bound; `None` for a full sync.
    pub since: Option<DateTime<Utc>>,
    /// Exclusive upper bound, frozen at run creation.
    pub until: DateTime<Utc>,
}

impl Window {
    /// The value to send as `since_last_changed`: one second early, so strict and inclusive
    /// servers both return every member changed at or after `since`.
    pub fn since_param(&self) -> Option<DateTime<Utc>> {
        self.since.map(|s| s - ChronoDuration::seconds(1))
    }

    /// The value to send as `before_last_changed` (strict `<`, per Mailchimp).
    pub fn before_param(&self) -> DateTime<Utc> {
        self.until
    }
}

/// Arguments of an `import_window` job: one page of a run's window.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PageArgs {
    /// Mailchimp audience id.
    pub list_id: String,
    /// The run's window.
    pub window: Window,
    /// First original position of this page.
    pub offset: u64,
    /// Members in this page (at most [`PAGE_SIZE`]).
    pub count: u64,
    /// Members in the whole window when the run was planned.
    pub planned_total: u64,
}

/// Splits a window of `total` members into page jobs of at most [`PAGE_SIZE`].
pub fn plan_pages(list_id: &str, window: Window, total: u64) -> Vec<PageArgs> {
    (0..total.div_ceil(PAGE_SIZE))
        .map(|k| {
            let offset = k * PAGE_SIZE;
            PageArgs {
                list_id: list_id.to_owned(),
                window,
                offset,
                count: PAGE_SIZE.min(total - offset),
                planned_total: total,
            }
        })
        .collect()
}

/// One response of a [`PageSource`]: the members at the requested positions and the size of the
/// whole window at the moment the page was read.
#[derive(Debug)]
pub struct Page<T> {
    /// Members at `[offset, offset + count)` in insertion order.
    pub items: Vec<T>,
    /// Size of the whole filtered window when this page was read.
    pub total: u64,
}

/// Reads pages of the window at current positions (Mailchimp in production).
pub trait PageSource {
    /// A member.
    type Item;
    /// The source's error.
    type Error;
    /// Fetches current positions `[offset, offset + count)`, `count <= PAGE_SIZE`.
    fn fetch(
        &self,
        offset: u64,
        count: u64,
    ) -> impl Future<Output = Result<Page<Self::Item>, Self::Error>> + Send;
}

/// Why a page could not be read losslessly.
#[derive(Debug, thiserror::Error)]
pub enum WindowError<E> {
    /// The source failed; see the inner error.
    #[error(transparent)]
    Source(E),
    /// Members kept leaving the window through every gap pass (retry later).
    #[error("the window kept shrinking through {passes} gap passes ({removed} members left)")]
    StillShrinking {
        /// Gap passes made.
        passes: usize,
        /// Members that had left the window at the last read.
        removed: u64,
    },
}

/// What reading one page took: the members and how many requests it cost.
#[derive(Debug)]
pub struct PageRead<T> {
    /// Every member of the page still in the window, plus possibly some of the previous page.
    pub items: Vec<T>,
    /// Requests made (1 when nothing left the window).
    pub requests: usize,
    /// Members that had left the window at the last read.
    pub removed: u64,
}

/// Reads one page job's range losslessly (see the module docs for the argument).
///
/// Errors: [`WindowError::Source`] when a request fails, [`WindowError::StillShrinking`] when
/// members keep leaving through [`MAX_GAP_PASSES`] passes; both mean "retry the job later".
pub async fn read_page<S: PageSource>(
    source: &S,
    args: &PageArgs,
) -> Result<PageRead<S::Item>, WindowError<S::Error>> {
    let first = source
        .fetch(args.offset, args.count)
        .await
        .map_err(WindowError::Source)?;
    let mut requests = 1;
    let mut removed = args.planned_total.saturating_sub(first.total);
    let mut items = first.items;
    let mut passes = 0;
    // The gap below our offset that members of our range may have slid into.
    while removed > 0 && args.offset > 0 {
        if passes == MAX_GAP_PASSES {
            return Err(WindowError::StillShrinking { passes, removed });
        }
        passes += 1;
        let gap_start = args.offset.saturating_sub(removed);
        let mut top = args.offset;
        let mut seen = removed;
        // Top down: over a set that only shrinks, descending offsets never skip a member.
        while top > gap_start {
            let count = (top - gap_start).min(PAGE_SIZE);
            let page = source
                .fetch(top - count, count)
                .await
                .map_err(WindowError::Source)?;
            requests += 1;
            seen = seen.max(args.planned_total.saturating_sub(page.total));
            items.extend(page.items);
            top -= count;
        }
        if seen == removed {
            break;
        }
        removed = seen;
    }
    Ok(PageRead {
        items,
        requests,
        removed,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use std::collections::HashSet;
    use std::sync::Mutex;

    /// An in-memory window in insertion order that removes members as pages are read,
    /// the way mid-run modifications do.
    struct Shrinking {
        members: Mutex<Vec<u32>>,
        /// Before the i-th fetch, remove these positions.
        removals: Mutex<Vec<Vec<usize>>>,
    }

    impl PageSource for Shrinking {
        type Item = u32;
        type Error = std::convert::Infallible;
        async fn fetch(&self, offset: u64, count: u64) -> Result<Page<u32>, Self::Error> {
            let mut members = self.members.lock().unwrap();
            let mut removals = self.removals.lock().unwrap();
            if !removals.is_empty() {
                let mut positions = removals.remove(0);
                positions.sort_unstable_by(|a, b| b.cmp(a));
                for p in positions {
                    if p < members.len() {
                        members.remove(p);
                    }
                }
            }
            let start = (offset as usize).min(members.len());
            let end = (start + count as usize).min(members.len());
            Ok(Page {
                items: members[start..end].to_vec(),
                total: members.len() as u64,
            })
        }
    }

    fn window() -> Window {
        Window {
            since: None,
            until: Utc::now(),
        }
    }

    #[test]
    fn plan_splits_the_window_into_full_pages_and_a_tail() {
        let pages = plan_pages("l1", window(), 2500);
        let shape: Vec<(u64, u64)> = pages.iter().map(|p| (p.offset, p.count)).collect();
        assert_eq!(shape, vec![(0, 1000), (1000, 1000), (2000, 500)]);
        assert!(plan_pages("l1", window(), 0).is_empty());
        assert_eq!(plan_pages("l1", window(), 1000).len(), 1);
        assert_eq!(plan_pages("l1", window(), 1001).len(), 2);
    }

    #[test]
    fn since_is_sent_one_second_early_and_until_as_is() {
        let w = Window {
            since: Some(DateTime::from_timestamp(100, 0).unwrap()),
            until: DateTime::from_timestamp(200, 0).unwrap(),
        };
        assert_eq!(w.since_param().unwrap().timestamp(), 99);
        assert_eq!(w.before_param().timestamp(), 200);
    }

    #[tokio::test]
    async fn a_page_without_removals_costs_one_request() {
        let source = Shrinking {
            members: Mutex::new((0..3000).collect()),
            removals: Mutex::new(vec![]),
        };
        let args = &plan_pages("l", window(), 3000)[1];
        let read = read_page(&source, args).await.unwrap();
        assert_eq!(read.requests, 1);
        assert_eq!(read.items, (1000..2000).collect::<Vec<_>>());
    }

    /// Members removed below a page's offset before it is read shift the page; the gap pass
    /// recovers the members that slid below the offset.
    #[tokio::test]
    async fn members_that_slid_below_the_offset_are_recovered_from_the_gap() {
        let source = Shrinking {
            members: Mutex::new((0..3000).collect()),
            // 7 members of page 0 leave before page 2 is read; 3 more leave during its gap pass.
            removals: Mutex::new(vec![vec![1, 5, 9, 100, 200, 300, 999], vec![0, 1, 2]]),
        };
        let args = &plan_pages("l", window(), 3000)[2];
        let read = read_page(&source, args).await.unwrap();
        let got: HashSet<u32> = read.items.into_iter().collect();
        for m in 2000..3000 {
            assert!(got.contains(&m), "member {m} of page 2 was skipped");
        }
        assert!(
            read.requests >= 3,
            "expected gap passes, made {}",
            read.requests
        );
    }

    /// The whole run: every page read while members keep leaving, in an adversarial order.
    /// Every member that never left must be read by some page.
    #[tokio::test]
    async fn no_unchanged_member_is_lost_whatever_the_page_order() {
        let total = 5000u32;
        let source = Shrinking {
            members: Mutex::new((0..total).collect()),
            // Two members leave before every third request, anywhere in the window.
            removals: Mutex::new(
                (0..60)
                    .map(|i| match i % 3 {
                        0 => vec![i * 37 % 900, i * 11 % 3000],
                        _ => vec![],
                    })
                    .collect(),
            ),
        };
        let pages = plan_pages("l", window(), u64::from(total));
        let mut got = HashSet::new();
        // Read pages last-to-first and interleaved, as parallel workers might.
        for idx in [4usize, 2, 0, 3, 1] {
            let read = read_page(&source, &pages[idx]).await.unwrap();
            got.extend(read.items);
        }
        let remaining: Vec<u32> = source.members.lock().unwrap().clone();
        for m in remaining {
            assert!(got.contains(&m), "unchanged member {m} was lost");
        }
    }

    #[tokio::test]
    async fn a_window_that_keeps_shrinking_gives_up_after_max_passes() {
        let source = Shrinking {
            members: Mutex::new((0..3000).collect()),
            removals: Mutex::new((0..100).map(|_| vec![0]).collect()),
        };
        let args = &plan_pages("l", window(), 3000)[2];
        let err = read_page(&source, args).await.unwrap_err();
        assert!(
            matches!(err, WindowError::StillShrinking { passes, .. } if passes == MAX_GAP_PASSES)
        );
    }
}
