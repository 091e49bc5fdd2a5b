"""
A fixed-depth jitter buffer: RTP payloads pushed in arrival order, popped
once per 20 ms tick in sequence order.

The buffer holds a stream back by C{depth} frames (60 ms by default) so
that packets arriving out of order or a little late still play in order,
and gives None for a packet that has not come when its turn is up.  It
does not adapt its depth: a fixed delay keeps recordings and bridges
aligned and costs nothing to compute, and the depth is configurable per
engine for networks whose jitter exceeds 60 ms.
"""

_SEQUENCE_MASK = 0xFFFF
_HALF_SEQUENCE = 0x8000
# A sequence jump this large either way is not loss or misordering but a
# new stream: the sender restarted, or a new SSRC took over without one
# (RFC 3550 Appendix A.1 uses the same kind of bound, MAX_MISORDER 100).
_RESYNC_DISTANCE = 100


class JitterBuffer:
    """
    Payloads keyed on their 16-bit RTP sequence number.

    Playout starts once C{depth} frames are buffered, or C{depth} ticks after
    the first one arrived, whichever is first, and starts again that way
    whenever the buffer runs dry (a talkspurt ended): the sequence numbers
    of a new talkspurt continue (RFC 3550 §5.1), so an empty buffer must not
    count the pause as loss.  At most C{capacity} frames are held: a burst
    beyond it drops the oldest, which bounds the delay a network stall can
    add.
    """

    def __init__(self, depth=3, capacity=None):
        if depth < 1:
            raise ValueError(f"jitter buffer depth {depth} is not at least 1")
        self.depth = depth
        self.capacity = 2 * depth if capacity is None else capacity
        if self.capacity < depth:
            raise ValueError(f"capacity {self.capacity} is smaller than depth {depth}")
        self._slots = {}
        # The sequence number the next pop plays; None until a packet came.
        self._next = None
        self._last_played = None
        self._priming = True
        self._priming_ticks = 0
        self.received = 0
        self.late = 0
        self.duplicates = 0
        self.overflowed = 0
        self.missing = 0
        self.resyncs = 0

    def __len__(self):
        return len(self._slots)

    def reset(self):
        """Forget everything buffered: the next packet starts a new stream."""
        self._slots.clear()
        self._next = None
        self._last_played = None
        self._priming = True
        self._priming_ticks = 0

    def push(self, sequence, payload):
        """Buffer C{payload}; False when it was dropped as late or duplicate."""
        slots = self._slots
        next_sequence = self._next
        if next_sequence is None:
            self._next = next_sequence = sequence
        ahead = (sequence - next_sequence) & _SEQUENCE_MASK
        if ahead < self.capacity and ahead < _RESYNC_DISTANCE:
            # The common case, in order or not: within the window, which
            # none of the cases below would change.
            pass
        elif ahead >= _HALF_SEQUENCE:
            behind = 0x10000 - ahead
            if self._priming and behind < self.capacity - len(slots) and self._unplayed(sequence):
                # Not played yet: an earlier packet of the stream that
                # arrived after a later one becomes the start.
                self._next = sequence
            elif behind <= _RESYNC_DISTANCE:
                # Its turn has passed: playing it now would reorder the audio.
                self.late += 1
                return False
            else:
                self._resync(sequence)
        elif ahead >= _RESYNC_DISTANCE:
            self._resync(sequence)
        elif ahead >= self.capacity:
            # Drop the oldest until this one fits the window.
            for _ in range(ahead - self.capacity + 1):
                if slots.pop(self._next, None) is not None:
                    self.overflowed += 1
                self._next = (self._next + 1) & _SEQUENCE_MASK
        if sequence in slots:
            self.duplicates += 1
            return False
        slots[sequence] = payload
        self.received += 1
        return True

    def _unplayed(self, sequence):
        last = self._last_played
        return last is None or 0 < (sequence - last) & _SEQUENCE_MASK < _HALF_SEQUENCE

    def _resync(self, sequence):
        self.resyncs += 1
        self.reset()
        self._next = sequence

    def pop(self):
        """The next payload in sequence order, or None (missing, or not started)."""
        slots = self._slots
        if self._priming:
            if not slots:
                return None
            self._priming_ticks += 1
            if len(slots) < self.depth and self._priming_ticks <= self.depth:
                return None
            self._priming = False
        next_sequence = self._next
        self._next = (next_sequence + 1) & _SEQUENCE_MASK
        payload = slots.pop(next_sequence, None)
        if payload is not None:
            self._last_played = next_sequence
        else:
            if slots:
                self.missing += 1
                self._last_played = next_sequence
            else:
                # Dry: the talkspurt ended (or everything after it was lost);
                # wait for the buffer to fill again before playing.
                self._priming = True
                self._priming_ticks = 0
                self._next = next_sequence
        return payload
