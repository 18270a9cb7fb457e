// proxy.mjs: forwards every request to scopemem with a bearer token added.
//
// The MCP conformance suite connects without credentials; scopemem refuses
// any request without one. This proxy stands in for a client that has a
// token: it adds "Authorization: Bearer $SCOPEMEM_TOKEN" and forwards the
// request unchanged otherwise (Host and Origin included, so that the
// suite's DNS rebinding checks reach scopemem as sent).
//
//   SCOPEMEM_TOKEN=... node proxy.mjs <listen-port> <target-port>
import http from 'node:http';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
const token = process.env.SCOPEMEM_TOKEN;
if (!listenPort || !targetPort || !token) {
	console.error('usage: SCOPEMEM_TOKEN=... node proxy.mjs <listen-port> <target-port>');
	process.exit(2);
}

const server = http.createServer((req, res) => {
	const headers = { ...req.headers, authorization: `Bearer ${token}` };
	const up = http.request({ host: '127.0.0.1', port: targetPort, method: req.method, path: req.url, headers, setHost: false }, (r) => {
		res.writeHead(r.statusCode, r.headers);
		r.pipe(res);
	});
	up.on('error', (err) => {
		res.writeHead(502, { 'content-type': 'text/plain' });
		res.end(`proxy: ${err.message}`);
	});
	req.pipe(up);
});
server.listen(listenPort, '127.0.0.1', () => console.error(`proxy: 127.0.0.1:${listenPort} -> 127.0.0.1:${targetPort}`));
