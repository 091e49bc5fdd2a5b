"""
SMS over SMPP 3.4: an ESME (the client side) that binds as a transceiver
to an operator's SMSC, submits messages and takes delivery receipts.

 - L{callcenter.notify.smpp.pdu}: the wire format, both directions;
 - L{callcenter.notify.smpp.text}: GSM 03.38 or UCS2, cut into
   concatenated segments;
 - L{callcenter.notify.smpp.receipts}: delivery receipts (TLVs or text);
 - L{callcenter.notify.smpp.protocol}: one bound link (window, keep-alive,
   timeouts, command_status mapping, receipts);
 - L{callcenter.notify.smpp.sender}: the L{IMessageSender} the outbox
   uses, keeping a link up under a C{ClientService}.
"""
