"""
A conference room whose members' media run in a media worker: the worker
mixes (L{callcenter.media.conference.ConferenceRoom} on its tick), the
server keeps the rest as L{ConferenceRoom} does (who is in, who
moderates, when the room ends), so that L{callcenter.telephony.conferences}
drives either the same way.  Every member's session must be in the
room's worker: the telephony service places the calls to a room's number
there (L{callcenter.media.remote.MediaWorkers.open_session}'s affinity).
"""

from twisted.internet import defer

from callcenter.media import commands
from callcenter.media.conference import RoomEnded


class RemoteMember:
    """A L{callcenter.media.conference.Member} as the server sees it: C{muted} and C{deaf} go to the worker."""

    def __init__(self, room, session, muted, deaf, moderator):
        self._room = room
        self.session = session
        self._muted = muted
        self._deaf = deaf
        self.moderator = moderator

    def _tell(self):
        room = self._room
        if not self.session.closed:
            # A room waiting for its moderator holds everyone silent.
            waiting = room.waiting
            room.worker.tell(
                commands.SetMember, room=room.number, session=self.session.number,
                muted=self._muted or waiting, deaf=self._deaf or waiting,
            )

    @property
    def muted(self):
        return self._muted

    @muted.setter
    def muted(self, on):
        self._muted = bool(on)
        self._tell()

    @property
    def deaf(self):
        return self._deaf

    @deaf.setter
    def deaf(self, on):
        self._deaf = bool(on)
        self._tell()


class RemoteRoom:
    """
    The room C{number} in C{worker}, with the L{ConferenceRoom} API that the
    conference application uses.  With C{wait_for_moderator} the worker's
    room is told members are deaf and muted until a moderator is in (its
    own waiting logic needs moderators it is not told about).
    """

    def __init__(self, worker, number, wait_for_moderator=False, end_with_moderator=False):
        self.worker = worker
        self.number = number
        self.wait_for_moderator = wait_for_moderator
        self.end_with_moderator = end_with_moderator
        self.ended = defer.Deferred()
        self._members = {}
        self._moderators = 0
        self._open = True
        worker.tell(commands.OpenRoom, room=number)

    @property
    def members(self):
        return list(self._members.values())

    @property
    def waiting(self):
        return self.wait_for_moderator and not self._moderators

    def join(self, session, muted=False, deaf=False, moderator=False):
        if not self._open:
            raise RoomEnded("the conference room has ended")
        if getattr(session, "worker", None) is not self.worker:
            raise ValueError(f"media session on port {session.local_port} is not in the room's media worker")
        if session in self._members:
            raise ValueError(f"media session on port {session.local_port} is already in the room")
        if session.closed:
            raise ValueError(f"media session on port {session.local_port} is closed")
        was_waiting = self.waiting
        member = self._members[session] = RemoteMember(self, session, muted, deaf, moderator)
        self._moderators += moderator
        waiting = self.waiting
        self.worker.tell(
            commands.JoinRoom, room=self.number, session=session.number,
            muted=muted or waiting, deaf=deaf or waiting,
        )
        if was_waiting and not waiting:
            self._tell_everyone()
        return member

    def _tell_everyone(self):
        # The room stopped or started waiting for a moderator.
        for member in self._members.values():
            member._tell()

    def promote(self, session):
        member = self._members.get(session)
        if member is None:
            return False
        if not member.moderator:
            was_waiting = self.waiting
            member.moderator = True
            self._moderators += 1
            if was_waiting:
                self._tell_everyone()
        return True

    def leave(self, session):
        member = self._members.pop(session, None)
        if member is None:
            return False
        if not session.closed:
            self.worker.tell(commands.LeaveRoom, room=self.number, session=session.number)
        if member.moderator:
            self._moderators -= 1
            if self.end_with_moderator and not self._moderators:
                self.end()
            elif self.waiting:
                self._tell_everyone()
        return True

    def end(self):
        if not self._open:
            return
        self._open = False
        for session in list(self._members):
            self.leave(session)
        self.worker.tell(commands.CloseRoom, room=self.number)
        self.ended.callback(None)
