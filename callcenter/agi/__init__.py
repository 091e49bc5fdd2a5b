"""
FastAGI: Asterisk's Gateway Interface over TCP (default port 4573).

An Asterisk dialplan line such as ``AGI(agi://callcenter:4573/flow)``
makes Asterisk connect to us, send the call's ``agi_*`` variables and then
execute the commands we send, one at a time, answering each with a result
line.  The wire format is in L{callcenter.agi.protocol}; typed commands in
L{callcenter.agi.commands}; an L{callcenter.interfaces.IChannel} over a
connection in L{callcenter.agi.channel}; the listener's factory, which runs
a flow per call, in L{callcenter.agi.server}.

FastAGI has no authentication: whoever reaches the port can claim any
caller.  Listen on the Asterisk servers' network only (and give
L{callcenter.agi.server.FastAGIFactory} their addresses).
"""
