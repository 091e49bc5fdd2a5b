"""
Conference rooms on public numbers: a room per dialled number, opened when
the first caller arrives and closed when the last one leaves.  In the room
a caller's * key mutes and unmutes them.
"""

from twisted.internet import defer

from callcenter.media.conference import ConferenceRoom

# Long enough never to end a quiet listener's wait; the call's end does.
_KEY_WAIT = 3600


class Conferences:
    def __init__(self, engine):
        self._engine = engine
        self._rooms = {}

    def __len__(self):
        return len(self._rooms)

    def members(self, number):
        room = self._rooms.get(number)
        return 0 if room is None else len(room.members)

    def application(self, number):
        """What answers calls to the room C{number}."""

        @defer.inlineCallbacks
        def join(channel):
            yield channel.answer()
            room = self._rooms.get(number)
            if room is None:
                room = self._rooms[number] = ConferenceRoom(self._engine)
            member = room.join(channel.media)
            channel.log.info(
                "joined conference {number} ({count} in the room)", number=number, count=len(room.members)
            )
            try:
                while channel.state != "ended":
                    key = yield channel.collect_digits(1, _KEY_WAIT, _KEY_WAIT, terminators="")
                    if key == "*":
                        member.muted = not member.muted
                        channel.log.info("{state} in conference {number}", state="muted" if member.muted else "unmuted", number=number)
            finally:
                room.leave(channel.media)
                if not room.members and self._rooms.get(number) is room:
                    room.end()
                    del self._rooms[number]

        return join
