#!/usr/bin/env node
// The SMSC of the SMS tests and bench: node-smpp (npm `smpp`), an SMPP
// implementation independent of ours, serving one account.
//
//   node smsc.js --system-id ID --password PW [--port 0] [--log FILE]
//        [--throttle-every N] [--refuse ADDR,ADDR] [--hold ADDR,ADDR]
//        [--no-receipts] [--receipt-delay MS]
//
// Prints "SMSC listening on 127.0.0.1:PORT" once it listens.  A bind with
// another account is refused (ESME_RBINDFAIL) and the session closed.
// Each submit_sm is answered (a message_id, unique across restarts), then
// a delivery receipt is sent: deliver_sm, esm_class 4, the Appendix B
// text and the receipted_message_id and message_state TLVs.  --log writes
// one JSON line per submit_sm received (before it is answered, so a
// client that has the answer finds the line): destination, TON/NPI,
// data_coding, esm_class, registered_delivery, short_message in hex,
// message_id (null if refused) and the status answered.
// --throttle-every N answers every Nth submit_sm ESME_RTHROTTLED;
// --refuse answers submits to those addresses ESME_RINVDSTADR; --hold
// never answers submits to those addresses (the client's timeouts, a
// crash with submits in flight).  --receipt-delay sends each receipt MS
// milliseconds after its submit_sm_resp, as a handset's report comes later.

'use strict';

const fs = require('fs');
const smpp = require('smpp');

function parseArgs(argv) {
	const options = {port: 0, log: null, throttleEvery: 0, refuse: new Set(), hold: new Set(), receipts: true, receiptDelay: 0};
	for (let i = 0; i < argv.length; i++) {
		const arg = argv[i];
		const value = () => {
			if (i + 1 >= argv.length) {
				throw new Error(`${arg} needs a value`);
			}
			return argv[++i];
		};
		if (arg === '--system-id') options.systemId = value();
		else if (arg === '--password') options.password = value();
		else if (arg === '--port') options.port = Number(value());
		else if (arg === '--log') options.log = value();
		else if (arg === '--throttle-every') options.throttleEvery = Number(value());
		else if (arg === '--refuse') value().split(',').filter(Boolean).forEach(a => options.refuse.add(a));
		else if (arg === '--hold') value().split(',').filter(Boolean).forEach(a => options.hold.add(a));
		else if (arg === '--no-receipts') options.receipts = false;
		else if (arg === '--receipt-delay') options.receiptDelay = Number(value());
		else throw new Error(`unknown argument ${arg}`);
	}
	if (options.systemId === undefined || options.password === undefined) {
		throw new Error('--system-id and --password are required');
	}
	return options;
}

const options = parseArgs(process.argv.slice(2));
const log = options.log ? fs.openSync(options.log, 'a') : null;

// Raw octets: the tests check the UDH and the encoding we were sent, not
// node-smpp's reading of them.
delete smpp.commands.submit_sm.params.short_message.filter;

// Unique across restarts on the same port: a restarted SMSC must not
// reuse the ids of receipts still to come.
const idPrefix = `${process.pid.toString(36)}${Date.now().toString(36)}`;
let submits = 0;
let messages = 0;

function stamp(date) {
	const two = n => String(n).padStart(2, '0');
	return two(date.getUTCFullYear() % 100) + two(date.getUTCMonth() + 1) + two(date.getUTCDate()) +
		two(date.getUTCHours()) + two(date.getUTCMinutes());
}

function receipt(session, pdu, messageId) {
	const now = stamp(new Date());
	const text = `id:${messageId} sub:001 dlvrd:001 submit date:${now} done date:${now} stat:DELIVRD err:000 text:`;
	session.deliver_sm({
		source_addr_ton: pdu.dest_addr_ton,
		source_addr_npi: pdu.dest_addr_npi,
		source_addr: pdu.destination_addr,
		dest_addr_ton: pdu.source_addr_ton,
		dest_addr_npi: pdu.source_addr_npi,
		destination_addr: pdu.source_addr,
		esm_class: 4,
		data_coding: 0,
		short_message: Buffer.from(text, 'ascii'),
		receipted_message_id: messageId,
		message_state: 2,
	});
}

function onSubmit(session, pdu) {
	submits += 1;
	const destination = pdu.destination_addr;
	let status = smpp.ESME_ROK;
	let messageId = null;
	if (options.hold.has(destination)) {
		status = null;
	} else if (options.throttleEvery && submits % options.throttleEvery === 0) {
		status = smpp.ESME_RTHROTTLED;
	} else if (options.refuse.has(destination)) {
		status = smpp.ESME_RINVDSTADR;
	} else {
		messages += 1;
		messageId = `${idPrefix}-${messages}`;
	}
	if (log !== null) {
		const shortMessage = Buffer.isBuffer(pdu.short_message) ? pdu.short_message : Buffer.alloc(0);
		fs.writeSync(log, JSON.stringify({
			received_at: Date.now(),
			sequence_number: pdu.sequence_number,
			destination,
			dest_addr_ton: pdu.dest_addr_ton,
			dest_addr_npi: pdu.dest_addr_npi,
			source: pdu.source_addr,
			data_coding: pdu.data_coding,
			esm_class: pdu.esm_class,
			registered_delivery: pdu.registered_delivery,
			short_message: shortMessage.toString('hex'),
			message_id: messageId,
			status,
		}) + '\n');
	}
	if (status === null) {
		return;
	}
	session.send(pdu.response(status === smpp.ESME_ROK ? {message_id: messageId} : {command_status: status}));
	if (messageId !== null && options.receipts && pdu.registered_delivery & 1) {
		if (options.receiptDelay > 0) {
			setTimeout(() => receipt(session, pdu, messageId), options.receiptDelay);
			return;
		}
		receipt(session, pdu, messageId);
	}
}

const server = smpp.createServer(session => {
	let bound = false;
	session.on('error', error => {
		process.stderr.write(`SMSC session error: ${error.message}\n`);
	});
	session.on('bind_transceiver', pdu => {
		if (pdu.system_id !== options.systemId || pdu.password !== options.password) {
			session.send(pdu.response({command_status: smpp.ESME_RBINDFAIL}), () => session.close());
			return;
		}
		bound = true;
		session.send(pdu.response({system_id: 'node-smsc'}));
	});
	session.on('submit_sm', pdu => {
		if (!bound) {
			session.send(pdu.response({command_status: smpp.ESME_RINVBNDSTS}));
			return;
		}
		onSubmit(session, pdu);
	});
	session.on('enquire_link', pdu => session.send(pdu.response()));
	session.on('unbind', pdu => {
		session.send(pdu.response(), () => session.close());
	});
	session.on('unknown', pdu => session.send(pdu.response()));
});

server.on('error', error => {
	process.stderr.write(`SMSC: ${error.message}\n`);
	process.exit(1);
});
server.listen(options.port, '127.0.0.1', () => {
	process.stdout.write(`SMSC listening on 127.0.0.1:${server.address().port}\n`);
});
process.on('SIGTERM', () => process.exit(0));
