/* global exports, OK -- Haraka loads plugins as CommonJS with its return codes (OK, DENY...) as globals */
// bench_rdns: answers Haraka's per-connection reverse DNS lookup with "localhost" without a query.
// Haraka's core otherwise calls dns.reverse() for every connection, which goes to the system's
// nameservers (c-ares does not read /etc/hosts for PTR); Postfix's smtpd resolves 127.0.0.1 from
// /etc/hosts. Benchmark only: a real deployment wants the real lookup.
exports.register = function () {
  this.register_hook('lookup_rdns', 'localhost_rdns');
};

exports.localhost_rdns = function (next) {
  next(OK, 'localhost');
};
