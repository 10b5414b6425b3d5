'use strict';
// Preloaded (`node --require`) into the conformance suite: every server it starts listens on 127.0.0.1.
// The suite calls `listen(0)` without a host, which Node binds to every interface; here a missing host, or
// one outside the loopback network, becomes 127.0.0.1 before the socket is bound.
const dns = require('dns');
const net = require('net');

const LOOPBACK = '127.0.0.1';
const isLoopback = (host) => typeof host === 'string' && (host === '::1' || /^127\./.test(host));
const listen = net.Server.prototype.listen;
const lookup = dns.lookup;

// Node looks a listening host up before binding, which would leave `address()` null right after `listen()`;
// the suite reads the port at once, so the loopback literal is answered without waiting (as without a host).
dns.lookup = function (hostname, ...rest) {
  const callback = rest[rest.length - 1];
  const options = rest.length > 1 && rest[0] !== null && typeof rest[0] === 'object' ? rest[0] : {};
  if (hostname === LOOPBACK && typeof callback === 'function') {
    if (options.all) callback(null, [{ address: LOOPBACK, family: 4 }]);
    else callback(null, LOOPBACK, 4);
    return {};
  }
  return lookup.call(this, hostname, ...rest);
};

net.Server.prototype.listen = function (...args) {
  const first = args[0];
  if (first !== null && typeof first === 'object' && !('path' in first) && !('fd' in first) && !('_handle' in first)) {
    if (!isLoopback(first.host)) args[0] = { ...first, host: LOOPBACK };
  } else if (first === undefined || typeof first === 'function') {
    args = [0, LOOPBACK, ...args.filter((arg) => arg !== undefined)];
  } else if (typeof first === 'number' || (typeof first === 'string' && /^\d+$/.test(first))) {
    if (typeof args[1] === 'string') {
      if (!isLoopback(args[1])) args[1] = LOOPBACK;
    } else {
      args.splice(1, 0, LOOPBACK);
    }
  }
  return listen.apply(this, args);
};
