// Echo server on the `ws` package, started by `tern compare` as
// `node echo.js PORT`. Listens on 127.0.0.1:PORT, prints one
// "listening on ws://..." line and echoes every message as it came (text
// as text, binary as binary) until it is killed.
'use strict';

const http = require('http');
const { WebSocketServer } = require('ws');

const port = Number(process.argv[2]);
if (!Number.isInteger(port) || port < 0 || port > 65535) {
  console.error('usage: node echo.js PORT');
  process.exit(2);
}

const server = http.createServer();
const wss = new WebSocketServer({
  server,
  // The default (100 MiB) is barely above the 100 MB test; 256 MiB
  // is the limit every server in the comparison gets.
  maxPayload: 256 * 1024 * 1024,
  // No permessage-deflate: the other servers do not compress either.
  perMessageDeflate: false,
  clientTracking: false,
});

wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => ws.send(data, { binary: isBinary }));
  ws.on('error', () => ws.terminate());
});

// The backlog tern's server asks for, so that a storm of connections
// does not overflow the accept queue (the kernel caps it at somaxconn).
server.listen({ host: '127.0.0.1', port, backlog: 65535 }, () => {
  const { address, port: bound } = server.address();
  console.log(`listening on ws://${address}:${bound}`);
});

server.on('error', (err) => {
  console.error(`echo.js: ${err.message}`);
  process.exit(1);
});
