//! Ack order apart from completion order: batches finish in any order (different keys, retries),
//! but a lane's acknowledgements must go out in the order its messages arrived (MQTT requires
//! PUBACKs in PUBLISH order [MQTT-4.6.0-2]; an offset commit covers everything before it). The
//! sequencer holds each lane's tokens and lets out the longest run of finished ones from the
//! front. A message a rule split into several parts takes one slot per part, its token in the
//! last: it is released once every part is finished, done only if every part is.

use std::collections::VecDeque;

pub struct Sequencer<T> {
    /// Sequence number of the front slot.
    base: u64,
    /// Each received message's token (on the last of its parts), with the outcome once
    /// finished.
    slots: VecDeque<(Option<T>, Option<bool>)>,
    /// Whether every part released since the last token was done.
    parts_done: bool,
}

impl<T> Default for Sequencer<T> {
    fn default() -> Self {
        Sequencer {
            base: 0,
            slots: VecDeque::new(),
            parts_done: true,
        }
    }
}

impl<T> Sequencer<T> {
    /// Takes the next received message's token; returns its sequence number.
    pub fn push(&mut self, token: T) -> u64 {
        self.slots.push_back((Some(token), None));
        self.base + self.slots.len() as u64 - 1
    }

    /// Takes a part of the next message that is not its last; returns its sequence number.
    pub fn push_part(&mut self) -> u64 {
        self.slots.push_back((None, None));
        self.base + self.slots.len() as u64 - 1
    }

    /// Records the outcome of message `seq`: done (ack it) or given up.
    pub fn complete(&mut self, seq: u64, done: bool) {
        if let Some(slot) = seq
            .checked_sub(self.base)
            .and_then(|i| self.slots.get_mut(i as usize))
        {
            slot.1 = Some(done);
        }
    }

    /// The finished messages at the front, in receive order, with their outcomes.
    pub fn release(&mut self) -> Vec<(T, bool)> {
        let mut out = Vec::new();
        while let Some((_, Some(_))) = self.slots.front() {
            if let Some((token, Some(done))) = self.slots.pop_front() {
                self.parts_done &= done;
                if let Some(token) = token {
                    out.push((token, std::mem::replace(&mut self.parts_done, true)));
                }
            }
            self.base += 1;
        }
        out
    }

    #[cfg(test)]
    pub fn is_empty(&self) -> bool {
        self.slots.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn releases_in_receive_order_whatever_finishes_first() {
        let mut s = Sequencer::default();
        let seqs: Vec<u64> = ["a", "b", "c", "d"].map(|t| s.push(t)).to_vec();
        assert_eq!(seqs, [0, 1, 2, 3]);
        s.complete(2, true);
        s.complete(1, true);
        assert!(s.release().is_empty(), "a is not done yet");
        s.complete(0, true);
        assert_eq!(s.release(), [("a", true), ("b", true), ("c", true)]);
        s.complete(3, false);
        assert_eq!(s.release(), [("d", false)], "given up, still in order");
        assert!(s.is_empty());
        assert_eq!(s.push("e"), 4, "numbers go on");
        s.complete(4, true);
        s.complete(4, true);
        s.complete(99, true);
        assert_eq!(s.release(), [("e", true)]);
    }

    #[test]
    fn a_message_in_parts_is_released_when_every_part_is_and_done_if_all_are() {
        let mut s = Sequencer::default();
        let parts = [s.push_part(), s.push_part(), s.push("a")];
        let next = s.push("b");
        s.complete(parts[2], true);
        s.complete(parts[0], true);
        s.complete(next, true);
        assert!(s.release().is_empty(), "the middle part is not done");
        s.complete(parts[1], true);
        assert_eq!(s.release(), [("a", true), ("b", true)]);
        let parts = [s.push_part(), s.push("c"), s.push("d")];
        parts.iter().for_each(|&p| s.complete(p, p != parts[0]));
        assert_eq!(
            s.release(),
            [("c", false), ("d", true)],
            "a part given up gives its message up, not the next one"
        );
    }
}
