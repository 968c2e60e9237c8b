//! When a listener wakes, starts, trusts or retires executors, as plain data
//! in and decisions out.
//!
//! The shell (src/execution/pool.rs and src/execution/registry.rs) copies
//! the shared-memory executor slots into [`Slot`]s under the registry's lock,
//! calls [`wake_or_start`], [`recheck`] or [`after_failed_start`], and applies
//! the returned [`Decision`]s in order under that same lock; starting a
//! process is the only step it takes after the lock. docs/execution.md states
//! these rules for operators.
//!
//! Time is a monotonic clock ([`MonotonicMs`]), never the wall clock: the
//! rules compare intervals of milliseconds to seconds, and a wall clock that
//! is stepped (NTP, an administrator, a virtual machine resumed) would make a
//! stuck start look fresh for hours, or an executor that just went idle look
//! idle long enough to be retired.

/// Milliseconds on a monotonic clock that every process of the server reads
/// alike (src/execution/registry.rs `Clocks`).
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MonotonicMs(pub i64);

impl MonotonicMs {
    /// Milliseconds from `earlier` to `self` (negative if `earlier` is later).
    pub fn since(self, earlier: MonotonicMs) -> i64 {
        self.0.saturating_sub(earlier.0)
    }

    /// `ms` milliseconds later.
    pub fn plus(self, ms: i64) -> MonotonicMs {
        MonotonicMs(self.0.saturating_add(ms))
    }
}

/// A slot taken for an executor whose process has not attached after this
/// long is given up (the postmaster could not start it), and an attached
/// executor that has not claimed yet is no longer counted as starting.
pub const START_TIMEOUT_MS: i64 = 10_000;

/// A busy executor that started a claim less than this long ago (its pause
/// between batches is 10 ms, src/execution/executor.rs `GATHER`), a claim on
/// time ([`Slot::claim_on_time`]), keeps up with its owner's events: another
/// executor for the owner would only split the same events into smaller
/// batches (more commits, more processor time per event). One that has not
/// claimed for longer is in slow handlers, one whose claim was late has slow
/// handlers or a backlog: events behind it get another executor. A trusted
/// executor is looked at again this long after it was trusted.
pub const KEEPING_UP_MS: i64 = 25;

/// An idle executor gives its slot back to the reserve only after this long
/// (one idle between two events would be replaced by a new process for every
/// event).
pub const RESERVE_IDLE_MS: i64 = 1000;

/// While an executor asked to give way is between handlers, or in a handler
/// that started less than this long ago, its slot frees soon: no other
/// executor is asked to give way meanwhile.
pub const GIVING_WAY_SOON_MS: i64 = 1000;

/// How many executors may run, from the settings.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// In all (`webhook.max_executors`, at most the registry's slots).
    pub executors: usize,
    /// For one owner (`webhook.max_executors_per_owner`).
    pub per_owner: usize,
}

impl Limits {
    /// The limits the settings give, with `slots` executor slots in shared
    /// memory; a setting below 1 counts as 1.
    pub fn from_settings(max_executors: i32, max_executors_per_owner: i32, slots: usize) -> Limits {
        Limits {
            executors: (max_executors.max(1) as usize).min(slots),
            per_owner: max_executors_per_owner.max(1) as usize,
        }
    }
}

/// What an executor slot is doing.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub enum SlotState {
    #[default]
    Free,
    /// Taken for an owner; its process has not attached yet.
    Starting,
    /// Its executor serves the owner.
    Running,
    /// Its executor ended in the middle of a handler and a listener has not
    /// recorded that attempt yet: the slot still counts, for its owner too.
    Ended,
}

/// One executor slot as a listener sees it.
#[derive(Copy, Clone, Debug, Default, PartialEq, Eq)]
pub struct Slot {
    pub state: SlotState,
    /// The role whose handlers its executor runs.
    pub owner: u32,
    /// When a listener took the slot for `owner`.
    pub taken_at: MonotonicMs,
    /// Since when it has had nothing to do (`None`: busy).
    pub idle_since: Option<MonotonicMs>,
    /// When it last started to claim events (`None`: not yet).
    pub last_claim: Option<MonotonicMs>,
    /// Whether that claim kept up: its handlers are fast and nothing it found
    /// had long been due (src/execution/executor.rs `note_claim`).
    pub claim_on_time: bool,
    /// Whether a handler runs now.
    pub in_handler: bool,
    /// When its current handler started or, between handlers, when it last
    /// started or finished one (`None`: it has run none).
    pub handler_since: Option<MonotonicMs>,
    /// It was asked to give way (exit after its current handler).
    pub giving_way: bool,
    /// When free, a process waits to serve it at once: its pool process has
    /// joined, or it is above the pool (a process is started for it). A pool
    /// slot whose process is being started again is served a second later.
    pub process_waiting: bool,
}

/// Whether a busy executor of the owner may be trusted to take the owner's
/// newly stored events (see [`KEEPING_UP_MS`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Trust {
    /// Yes, if it keeps up: after a batch is stored, and in the
    /// once-a-second round (one held up in a handler is no longer trusted a
    /// round later).
    KeepingUp,
    /// No: a recheck found that the trusted executor did not come back.
    Nobody,
}

/// One step for the shell to take, in order, under the registry's lock.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The slot's executor never attached ([`START_TIMEOUT_MS`]): free it.
    FreeStuckSlot(usize),
    /// Wake the owner's idle executor in this slot, withdrawing any request
    /// that it give way: it claims the new events.
    Wake(usize),
    /// Set the latch of the owner's busy executor in this slot: it takes the
    /// new events at its next claim (the latch in case that claim comes up
    /// empty as they commit).
    Nudge(usize),
    /// Take this free slot for the owner and start an executor in it;
    /// `first_for_owner` when the owner had none (what a failed start needs,
    /// see [`after_failed_start`]).
    Start { slot: usize, first_for_owner: bool },
    /// Ask the executor in this slot to give way: it exits after its current
    /// handler, and the events it claimed and did not run are released.
    GiveWay(usize),
    /// Remember the owner as waiting for a slot, served first when one frees.
    RememberWaiting,
    /// Look at the owner again at `at` ([`recheck`] with `since`): a trusted
    /// executor must have started a claim after `since` by then, or a slot
    /// given up for the owner's next executor is free.
    RecheckAt { since: MonotonicMs, at: MonotonicMs },
}

/// Events of `owner` were stored (or are due): wake an idle executor of the
/// owner; if all of its executors are busy (a slow handler must not hold up
/// the owner's other events) and none keeps up, start another, up to
/// [`Limits::per_owner`], if the pool has room. An owner's first executor may
/// take the last free slot; later ones leave it for an owner that has none,
/// and when that last slot is taken, an executor idle for a while or an extra
/// executor of an owner that has several gives way. When there is no room,
/// an owner without executors is remembered as waiting and an idle executor,
/// else a busy one, gives way; a busy owner's next executor waits for an
/// idle one to leave, and is looked at again then.
pub fn wake_or_start(
    slots: &[Slot],
    limits: Limits,
    now: MonotonicMs,
    owner: u32,
    trust: Trust,
) -> Vec<Decision> {
    let mut decisions = Vec::new();
    let mut in_use = 0;
    let mut owners_executors = 0;
    // The first free slot whose process waits, else the first free one.
    let mut free: Option<(usize, bool)> = None;
    let mut idlest: Option<(usize, MonotonicMs)> = None;
    let mut owners_busy = Vec::new();
    let mut trusted = false;
    for (index, slot) in slots.iter().enumerate() {
        let mut state = slot.state;
        if state == SlotState::Starting && now.since(slot.taken_at) > START_TIMEOUT_MS {
            decisions.push(Decision::FreeStuckSlot(index));
            state = SlotState::Free;
        }
        if state == SlotState::Free {
            let ready = slot.process_waiting;
            if free.is_none_or(|(_, free_ready)| ready && !free_ready) {
                free = Some((index, ready));
            }
            continue;
        }
        in_use += 1;
        if slot.owner == owner {
            owners_executors += 1;
            match state {
                // It will claim what is due once it runs (unless its start-up
                // got stuck).
                SlotState::Starting => return decisions,
                SlotState::Running
                    if slot.last_claim.is_none() && now.since(slot.taken_at) < START_TIMEOUT_MS =>
                {
                    return decisions
                }
                // Its lost attempt is recorded at the next round; other
                // executors skip that event until then.
                SlotState::Ended => {}
                SlotState::Running if slot.idle_since.is_some() => {
                    decisions.push(Decision::Wake(index));
                    return decisions;
                }
                _ => {
                    // Between batches (gathering) or in a short one, on time:
                    // it takes the new events at its next claim, in a moment.
                    trusted |= trust == Trust::KeepingUp
                        && !slot.giving_way
                        && slot.claim_on_time
                        && slot
                            .last_claim
                            .is_some_and(|claim| now.since(claim) < KEEPING_UP_MS);
                    owners_busy.push(index);
                }
            }
            continue;
        }
        if state == SlotState::Running {
            if let Some(since) = slot.idle_since {
                if idlest.is_none_or(|(_, idlest_since)| since < idlest_since) {
                    idlest = Some((index, since));
                }
            }
        }
    }
    decisions.extend(owners_busy.into_iter().map(Decision::Nudge));
    if trusted {
        decisions.push(Decision::RecheckAt {
            since: now,
            at: now.plus(KEEPING_UP_MS),
        });
        return decisions;
    }
    if owners_executors >= limits.per_owner {
        return decisions;
    }
    // An owner's first executor may take the last free slot; further ones
    // leave it for an owner that has none.
    let room = if owners_executors == 0 { 1 } else { 2 };
    match free {
        Some((index, _)) if in_use + room <= limits.executors => {
            decisions.push(Decision::Start {
                slot: index,
                first_for_owner: owners_executors == 0,
            });
            if in_use + 1 == limits.executors {
                // The reserve is gone: get it back, from an executor idle for
                // a while (not one between two events) or an extra one of a
                // busy owner.
                let long_idle = idlest
                    .filter(|(_, since)| now.since(*since) >= RESERVE_IDLE_MS)
                    .map(|(index, _)| index);
                if let Some(victim) = long_idle.or_else(|| retire_choice(slots, now, 2)) {
                    decisions.push(Decision::GiveWay(victim));
                }
            }
        }
        // No room (for a second executor: none beside the reserve).
        _ => {
            if owners_executors == 0 {
                decisions.push(Decision::RememberWaiting);
            }
            let victim = idlest.map(|(index, _)| index).or_else(|| {
                // Nobody is idle. An owner without any executor must not wait
                // for others' steady work to end: one busy executor finishes
                // its current handler and gives way.
                (owners_executors == 0)
                    .then(|| retire_choice(slots, now, 1))
                    .flatten()
            });
            if let Some(victim) = victim {
                decisions.push(Decision::GiveWay(victim));
                if owners_executors > 0 {
                    // A busy owner's next executor, once the idle one has
                    // left (in a moment): look again then.
                    decisions.push(Decision::RecheckAt {
                        since: now,
                        at: now.plus(KEEPING_UP_MS),
                    });
                }
            }
        }
    }
    decisions
}

/// A recheck of `owner` made at `since` ([`Decision::RecheckAt`]) is due: if
/// a busy executor of the owner started a claim after `since`, that claim
/// saw the events stored before it (nothing to do); otherwise the trusted
/// executor is held up, and the owner is served as by [`wake_or_start`]
/// without trusting anyone.
pub fn recheck(
    slots: &[Slot],
    limits: Limits,
    now: MonotonicMs,
    owner: u32,
    since: MonotonicMs,
) -> Vec<Decision> {
    let claimed_since = slots.iter().any(|slot| {
        slot.owner == owner
            && slot.state == SlotState::Running
            && slot.idle_since.is_none()
            && slot.last_claim.is_some_and(|claim| claim > since)
    });
    if claimed_since {
        return Vec::new();
    }
    wake_or_start(slots, limits, now, owner, Trust::Nobody)
}

/// The process for a [`Decision::Start`] could not be started (no
/// background-worker slot) and the shell freed its slot: as if the pool were
/// full, an owner that had no executor is remembered as waiting and a busy
/// executor gives way, rather than the owner waiting for a
/// background-worker slot that may never free.
pub fn after_failed_start(
    slots: &[Slot],
    now: MonotonicMs,
    first_for_owner: bool,
) -> Vec<Decision> {
    if !first_for_owner {
        return Vec::new();
    }
    let mut decisions = vec![Decision::RememberWaiting];
    decisions.extend(retire_choice(slots, now, 1).map(Decision::GiveWay));
    decisions
}

/// Whether fewer slots than `executors` ([`Limits::executors`]) are in use,
/// so an owner remembered as waiting can get one now.
pub fn room_for_another(states: impl IntoIterator<Item = SlotState>, executors: usize) -> bool {
    states
        .into_iter()
        .filter(|state| *state != SlotState::Free)
        .count()
        < executors
}

/// Which busy executor gives way: one of an owner that has at least
/// `owners_at_least` running executors, the most first; of those, one
/// between handlers, else the one whose handler started last (one that has
/// run long is likely stuck in a slow handler). Never one that has not
/// claimed yet (it would leave having run nothing, and the next one too);
/// none while another is already giving way between handlers or in a
/// handler that started less than [`GIVING_WAY_SOON_MS`] ago.
fn retire_choice(slots: &[Slot], now: MonotonicMs, owners_at_least: usize) -> Option<usize> {
    let running = || {
        slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| slot.state == SlotState::Running)
    };
    let giving_way_soon = running().any(|(_, slot)| {
        slot.giving_way
            && (!slot.in_handler
                || slot
                    .handler_since
                    .is_some_and(|started| now.since(started) < GIVING_WAY_SOON_MS))
    });
    if giving_way_soon {
        return None;
    }
    let count = |owner: u32| running().filter(|(_, slot)| slot.owner == owner).count();
    // Of equal candidates, the last slot (max_by_key keeps the last maximum).
    running()
        .filter(|(_, slot)| !slot.giving_way && slot.last_claim.is_some())
        .filter(|(_, slot)| count(slot.owner) >= owners_at_least)
        .max_by_key(|(_, slot)| (count(slot.owner), !slot.in_handler, slot.handler_since))
        .map(|(index, _)| index)
}

#[cfg(test)]
mod tests {
    use super::*;
    use Decision::*;

    const ALICE: u32 = 10;
    const BOB: u32 = 20;
    const CAROL: u32 = 30;

    /// The clock in every case: hours after the server started, so that
    /// long gaps fit before it.
    const NOW: i64 = 10_000_000;

    fn at(ms: i64) -> MonotonicMs {
        MonotonicMs(ms)
    }

    fn ago(ms: i64) -> MonotonicMs {
        MonotonicMs(NOW - ms)
    }

    /// A free slot whose process waits.
    fn free() -> Slot {
        Slot {
            process_waiting: true,
            ..Slot::default()
        }
    }

    /// A free pool slot whose process is being started again.
    fn free_unready() -> Slot {
        Slot::default()
    }

    fn starting(owner: u32, taken_ms_ago: i64) -> Slot {
        Slot {
            state: SlotState::Starting,
            owner,
            taken_at: ago(taken_ms_ago),
            process_waiting: true,
            ..Slot::default()
        }
    }

    fn ended(owner: u32) -> Slot {
        Slot {
            state: SlotState::Ended,
            owner,
            taken_at: ago(60_000),
            ..Slot::default()
        }
    }

    /// An executor that attached a minute ago and has not claimed yet.
    fn running(owner: u32) -> Slot {
        Slot {
            state: SlotState::Running,
            owner,
            taken_at: ago(60_000),
            ..Slot::default()
        }
    }

    impl Slot {
        fn taken(self, ms_ago: i64) -> Slot {
            Slot {
                taken_at: ago(ms_ago),
                ..self
            }
        }
        /// Its last claim started `ms_ago`, on time.
        fn on_time(self, ms_ago: i64) -> Slot {
            Slot {
                last_claim: Some(ago(ms_ago)),
                claim_on_time: true,
                ..self
            }
        }
        /// Its last claim started `ms_ago`, late (slow handlers, a backlog).
        fn late(self, ms_ago: i64) -> Slot {
            Slot {
                last_claim: Some(ago(ms_ago)),
                claim_on_time: false,
                ..self
            }
        }
        fn idle(self, ms_ago: i64) -> Slot {
            Slot {
                idle_since: Some(ago(ms_ago)),
                ..self
            }
        }
        /// In a handler that started `ms_ago`.
        fn in_handler(self, ms_ago: i64) -> Slot {
            Slot {
                in_handler: true,
                handler_since: Some(ago(ms_ago)),
                ..self
            }
        }
        /// Between handlers, the last one `ms_ago`.
        fn between(self, ms_ago: i64) -> Slot {
            Slot {
                in_handler: false,
                handler_since: Some(ago(ms_ago)),
                ..self
            }
        }
        fn giving_way(self) -> Slot {
            Slot {
                giving_way: true,
                ..self
            }
        }
    }

    /// A claimed executor busy in a handler that started a while ago, not
    /// keeping up: what a slow owner's executor looks like.
    fn busy(owner: u32) -> Slot {
        running(owner).late(5_000).in_handler(5_000)
    }

    #[derive(Debug)]
    enum Call {
        WakeOrStart(Trust),
        Recheck { since: MonotonicMs },
        AfterFailedStart { first_for_owner: bool },
    }
    use Call::*;

    const TRUSTING: Call = WakeOrStart(Trust::KeepingUp);
    const UNTRUSTING: Call = WakeOrStart(Trust::Nobody);

    struct Case {
        name: &'static str,
        slots: Vec<Slot>,
        /// (`webhook.max_executors`, `webhook.max_executors_per_owner`).
        limits: (i32, i32),
        owner: u32,
        call: Call,
        expected: Vec<Decision>,
    }

    fn case(
        name: &'static str,
        slots: Vec<Slot>,
        limits: (i32, i32),
        call: Call,
        expected: Vec<Decision>,
    ) -> Case {
        Case {
            name,
            slots,
            limits,
            owner: ALICE,
            call,
            expected,
        }
    }

    fn recheck_in(ms: i64) -> Decision {
        RecheckAt {
            since: at(NOW),
            at: at(NOW + ms),
        }
    }

    fn first(slot: usize) -> Decision {
        Start {
            slot,
            first_for_owner: true,
        }
    }

    fn another(slot: usize) -> Decision {
        Start {
            slot,
            first_for_owner: false,
        }
    }

    // One case per row: the name, the slots, then the limits, the call and
    // the decisions expected.
    #[rustfmt::skip]
    fn cases() -> Vec<Case> {
        vec![
            // Starting a first executor.
            case("an empty pool starts the owner's first executor in the first slot",
                vec![free(), free(), free(), free()],
                (4, 2), TRUSTING, vec![first(0)]),
            case("a free slot whose process waits is preferred",
                vec![free_unready(), free(), free()],
                (3, 2), TRUSTING, vec![first(1)]),
            case("with no process waiting, the first free slot is taken",
                vec![busy(BOB), free_unready(), free_unready()],
                (3, 2), TRUSTING, vec![first(1)]),
            case("an owner whose executor is starting waits for it",
                vec![starting(ALICE, 500), free()],
                (2, 2), TRUSTING, vec![]),
            case("an executor that attached and has not claimed yet will claim",
                vec![running(ALICE).taken(9_999), free()],
                (2, 2), TRUSTING, vec![]),
            case("one that has not claimed for exactly the start timeout is no longer starting",
                vec![running(ALICE).taken(START_TIMEOUT_MS), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), another(1)]),
            // Stuck starts.
            case("a start stuck for longer than the timeout frees its slot, which is taken",
                vec![starting(BOB, START_TIMEOUT_MS + 1), busy(CAROL)],
                (2, 2), TRUSTING, vec![FreeStuckSlot(0), first(0)]),
            case("a start exactly at the timeout is still waited for",
                vec![starting(ALICE, START_TIMEOUT_MS), free()],
                (2, 2), TRUSTING, vec![]),
            case("the owner's own stuck start no longer counts for it",
                vec![starting(ALICE, START_TIMEOUT_MS + 1), free()],
                (2, 2), TRUSTING, vec![FreeStuckSlot(0), first(0)]),
            case("stuck starts after the owner's starting one are freed by a later call",
                vec![starting(BOB, 60_000), starting(ALICE, 10), starting(CAROL, 60_000)],
                (3, 2), TRUSTING, vec![FreeStuckSlot(0)]),
            case("a long gap: a start taken an hour ago is stuck",
                vec![starting(BOB, 3_600_000), busy(CAROL)],
                (2, 2), TRUSTING, vec![FreeStuckSlot(0), first(0)]),
            // Waking.
            case("the owner's idle executor is woken",
                vec![running(ALICE).on_time(3_000).idle(2_000), free()],
                (2, 2), TRUSTING, vec![Wake(0)]),
            case("an idle executor asked to give way is woken (the shell withdraws the request)",
                vec![running(ALICE).on_time(3_000).idle(2_000).giving_way(), free()],
                (2, 2), TRUSTING, vec![Wake(0)]),
            case("the first of the owner's executors decides: busy then idle",
                vec![busy(ALICE), running(ALICE).on_time(3_000).idle(5), free()],
                (3, 3), TRUSTING, vec![Wake(1)]),
            case("the first of the owner's executors decides: starting then idle",
                vec![starting(ALICE, 5), running(ALICE).on_time(3_000).idle(5)],
                (3, 3), TRUSTING, vec![]),
            case("an ended executor counts for its owner but is not woken",
                vec![ended(ALICE), free(), free()],
                (3, 2), TRUSTING, vec![another(1)]),
            // Trusting a busy executor.
            case("a busy executor that claimed on time just now is trusted",
                vec![running(ALICE).on_time(10).in_handler(5), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), recheck_in(KEEPING_UP_MS)]),
            case("a claim just under the keeping-up interval ago is trusted",
                vec![running(ALICE).on_time(KEEPING_UP_MS - 1), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), recheck_in(KEEPING_UP_MS)]),
            case("a claim exactly the keeping-up interval ago is not",
                vec![running(ALICE).on_time(KEEPING_UP_MS), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), another(1)]),
            case("a late claim (slow handlers, a backlog) is not trusted",
                vec![running(ALICE).late(5), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), another(1)]),
            case("an executor giving way is not trusted",
                vec![running(ALICE).on_time(5).giving_way(), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), another(1)]),
            case("a recheck trusts nobody",
                vec![running(ALICE).on_time(5), free(), free()],
                (3, 2), UNTRUSTING, vec![Nudge(0), another(1)]),
            case("one trusted executor of several is enough, and all busy ones are nudged",
                vec![busy(ALICE), running(ALICE).on_time(5), free(), free()],
                (4, 3), TRUSTING, vec![Nudge(0), Nudge(1), recheck_in(KEEPING_UP_MS)]),
            case("trust is given even at the owner's limit",
                vec![running(ALICE).on_time(5), free()],
                (2, 1), TRUSTING, vec![Nudge(0), recheck_in(KEEPING_UP_MS)]),
            // Starting a second executor.
            case("a busy owner's second executor starts while another slot stays free",
                vec![busy(ALICE), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0), another(1)]),
            case("a busy owner at webhook.max_executors_per_owner gets no more",
                vec![busy(ALICE), busy(ALICE), free(), free()],
                (4, 2), TRUSTING, vec![Nudge(0), Nudge(1)]),
            case("webhook.max_executors_per_owner below 1 counts as 1",
                vec![busy(ALICE), free(), free()],
                (3, 0), TRUSTING, vec![Nudge(0)]),
            case("a second executor leaves the last free slot: a busy owner gives way to nobody",
                vec![busy(ALICE), busy(BOB), free()],
                (3, 2), TRUSTING, vec![Nudge(0)]),
            case("with webhook.max_executors = 2 an owner has one",
                vec![busy(ALICE), free()],
                (2, 2), TRUSTING, vec![Nudge(0)]),
            case("slots beyond webhook.max_executors are not used",
                vec![busy(ALICE), busy(BOB), free(), free()],
                (3, 2), TRUSTING, vec![Nudge(0)]),
            case("a second executor waiting for the reserve retires an idle one and looks again",
                vec![busy(ALICE), running(BOB).on_time(900).idle(10), free()],
                (3, 2), TRUSTING, vec![Nudge(0), GiveWay(1), recheck_in(KEEPING_UP_MS)]),
            case("of idle executors, the one idle longest gives way",
                vec![busy(ALICE), running(BOB).on_time(900).idle(10),
                     running(CAROL).on_time(900).idle(500)],
                (3, 2), TRUSTING, vec![Nudge(0), GiveWay(2), recheck_in(KEEPING_UP_MS)]),
            // The last free slot and the reserve.
            case("a first executor takes the last free slot; nobody can give it back",
                vec![busy(BOB), busy(CAROL), free()],
                (3, 2), TRUSTING, vec![first(2)]),
            case("taking the last slot retires an executor idle for a second",
                vec![running(BOB).on_time(2_000).idle(RESERVE_IDLE_MS), busy(CAROL), free()],
                (3, 2), TRUSTING, vec![first(2), GiveWay(0)]),
            case("one idle for less than a second stays (between two events)",
                vec![running(BOB).on_time(2_000).idle(RESERVE_IDLE_MS - 1), busy(CAROL), free()],
                (3, 2), TRUSTING, vec![first(2)]),
            case("else an extra executor of an owner that has several gives way",
                vec![busy(BOB), busy(BOB), free()],
                (3, 2), TRUSTING, vec![first(2), GiveWay(1)]),
            case("a long gap: an executor idle for an hour gives the reserve back",
                vec![running(BOB).on_time(3_600_000).idle(3_600_000), busy(CAROL), free()],
                (3, 2), TRUSTING, vec![first(2), GiveWay(0)]),
            case("with room to spare, nobody gives way",
                vec![running(BOB).on_time(2_000).idle(5_000), free(), free()],
                (3, 2), TRUSTING, vec![first(1)]),
            // No room: giving way to an owner that has no executor.
            case("a full pool: the owner waits and an idle executor gives way",
                vec![busy(BOB), running(CAROL).on_time(900).idle(5)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            case("a full busy pool: the busy executor whose handler started last gives way",
                vec![running(BOB).late(10).in_handler(3_000),
                     running(CAROL).late(10).in_handler(200)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            case("one between handlers gives way before one in a handler",
                vec![running(BOB).late(10).between(50), running(CAROL).late(10).in_handler(5)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(0)]),
            case("an owner with several executors gives way first",
                vec![busy(BOB), busy(BOB), running(CAROL).late(10).between(5)],
                (3, 3), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            case("of equal candidates the last slot gives way",
                vec![busy(BOB), busy(CAROL)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            case("one that has not claimed yet never gives way",
                vec![busy(BOB), running(CAROL).taken(20_000).in_handler(1)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(0)]),
            case("nobody gives way while one giving way is between handlers",
                vec![busy(BOB).between(5_000).giving_way(), busy(CAROL)],
                (2, 2), TRUSTING, vec![RememberWaiting]),
            case("nor while one giving way is in a handler started under a second ago",
                vec![busy(BOB).in_handler(GIVING_WAY_SOON_MS - 1).giving_way(), busy(CAROL)],
                (2, 2), TRUSTING, vec![RememberWaiting]),
            case("one giving way in a handler for a second (likely stuck) lets another give way",
                vec![busy(BOB).in_handler(GIVING_WAY_SOON_MS).giving_way(), busy(CAROL)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            case("a full pool of starting and ended slots: the owner only waits",
                vec![starting(BOB, 5), ended(CAROL)],
                (2, 2), TRUSTING, vec![RememberWaiting]),
            case("an ended executor (idle before the batch it ended in) is not idle",
                vec![busy(BOB), ended(CAROL).idle(5_000)],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(0)]),
            case("no slot at all beyond the limit: the owner waits",
                vec![busy(BOB)],
                (1, 2), TRUSTING, vec![RememberWaiting, GiveWay(0)]),
            case("an idle executor asked to give way still counts as idle",
                vec![busy(BOB), running(CAROL).on_time(900).idle(5).giving_way()],
                (2, 2), TRUSTING, vec![RememberWaiting, GiveWay(1)]),
            // Rechecks.
            case("a recheck: a claim started after the recheck was made took the events",
                vec![running(ALICE).on_time(5), free(), free()],
                (3, 2), Recheck { since: ago(20) }, vec![]),
            case("a recheck: a claim started exactly when it was made does not count",
                vec![running(ALICE).on_time(25), free(), free()],
                (3, 2), Recheck { since: ago(25) }, vec![Nudge(0), another(1)]),
            case("a recheck trusts nobody, even a claim on time just before it was made",
                vec![running(ALICE).on_time(15), free(), free()],
                (3, 2), Recheck { since: ago(10) }, vec![Nudge(0), another(1)]),
            case("a recheck: no claim since, the owner gets another executor",
                vec![running(ALICE).on_time(40).in_handler(30), free(), free()],
                (3, 2), Recheck { since: ago(25) }, vec![Nudge(0), another(1)]),
            case("a recheck: an idle executor's later claim does not count, it is woken",
                vec![running(ALICE).on_time(5).idle(1), free()],
                (2, 2), Recheck { since: ago(25) }, vec![Wake(0)]),
            case("a recheck: another owner's claim does not count",
                vec![running(ALICE).late(40), running(BOB).on_time(1), free(), free()],
                (4, 2), Recheck { since: ago(25) }, vec![Nudge(0), another(2)]),
            case("a recheck after a long gap: no claim since, another executor",
                vec![running(ALICE).on_time(3_600_030).in_handler(3_600_000), free(), free()],
                (3, 2), Recheck { since: ago(3_600_025) }, vec![Nudge(0), another(1)]),
            case("a recheck after a long gap: a claim since counts",
                vec![running(ALICE).on_time(3_000_000), free(), free()],
                (3, 2), Recheck { since: ago(3_600_025) }, vec![]),
            case("a recheck whose owner's executors all left starts a first one",
                vec![free(), free()],
                (2, 2), Recheck { since: ago(25) }, vec![first(0)]),
            // A start that failed.
            case("a failed first start: the owner waits and a busy executor gives way",
                vec![busy(BOB), free()],
                (2, 2), AfterFailedStart { first_for_owner: true },
                vec![RememberWaiting, GiveWay(0)]),
            case("a failed first start with nobody to give way: the owner waits",
                vec![busy(BOB).giving_way().between(5), free()],
                (2, 2), AfterFailedStart { first_for_owner: true }, vec![RememberWaiting]),
            case("a failed second start: nothing more",
                vec![busy(ALICE), busy(BOB), free()],
                (3, 2), AfterFailedStart { first_for_owner: false }, vec![]),
        ]
    }

    #[test]
    fn decision_table() {
        let mut failures = Vec::new();
        for case in cases() {
            let limits = Limits::from_settings(case.limits.0, case.limits.1, case.slots.len());
            let now = at(NOW);
            let got = match case.call {
                WakeOrStart(trust) => wake_or_start(&case.slots, limits, now, case.owner, trust),
                Recheck { since } => recheck(&case.slots, limits, now, case.owner, since),
                AfterFailedStart { first_for_owner } => {
                    after_failed_start(&case.slots, now, first_for_owner)
                }
            };
            if got != case.expected {
                failures.push(format!(
                    "{}: expected {:?}, got {:?}",
                    case.name, case.expected, got
                ));
            }
        }
        assert!(failures.is_empty(), "\n{}", failures.join("\n"));
    }

    #[test]
    fn the_clock_reads_alike_at_its_edges() {
        // A clock that starts at 0 (the postmaster's start) is as good as any.
        let slots = [running(ALICE).on_time(0), free(), free()];
        let slots = slots.map(|slot| Slot {
            last_claim: Some(at(0)),
            taken_at: at(0),
            ..slot
        });
        let limits = Limits::from_settings(3, 2, 3);
        assert_eq!(
            wake_or_start(&slots, limits, at(24), ALICE, Trust::KeepingUp),
            vec![
                Nudge(0),
                RecheckAt {
                    since: at(24),
                    at: at(49)
                }
            ]
        );
        assert_eq!(
            wake_or_start(&slots, limits, at(25), ALICE, Trust::KeepingUp),
            vec![Nudge(0), another(1)]
        );
        // Never an overflow, however far apart two readings are.
        assert_eq!(at(i64::MAX).since(at(i64::MIN)), i64::MAX);
        assert_eq!(at(i64::MAX).plus(KEEPING_UP_MS), at(i64::MAX));
    }

    #[test]
    fn room_for_another_counts_every_slot_in_use() {
        use SlotState::*;
        assert!(room_for_another([Free, Running, Starting, Free], 3));
        assert!(!room_for_another([Running, Starting, Ended, Free], 3));
        assert!(!room_for_another([Running, Running, Running, Running], 3));
    }

    #[test]
    fn limits_come_from_the_settings() {
        assert_eq!(
            Limits::from_settings(4, 2, 128),
            Limits {
                executors: 4,
                per_owner: 2
            }
        );
        assert_eq!(
            Limits::from_settings(0, -1, 128),
            Limits {
                executors: 1,
                per_owner: 1
            }
        );
        assert_eq!(Limits::from_settings(500, 500, 128).executors, 128);
    }
}
