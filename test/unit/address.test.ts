import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { splitPlainAddress } from '../../src/services/recipient.service.js';

describe('splitPlainAddress', () => {
  const accepted: [string, string, string][] = [
    ['alice@acme.test', 'alice', 'acme.test'],
    ['Alice@ACME.Test', 'alice', 'acme.test'],
    ['alice+tag@acme.test', 'alice+tag', 'acme.test'],
    ['first.last@mail.acme.test', 'first.last', 'mail.acme.test'],
    ['alice@acme.test.', 'alice', 'acme.test'],
    [" o'neil@acme.test ", "o'neil", 'acme.test'],
  ];
  for (const [input, local, domain] of accepted) {
    it(`when given ${JSON.stringify(input)}, then it splits to ${local} @ ${domain}`, () => {
      assert.deepEqual(splitPlainAddress(input), { local, domain });
    });
  }

  const refused: [string, string][] = [
    ['percent hack', 'victim%gmail.com@acme.test'],
    ['bang path', 'gmail.com!victim@acme.test'],
    ['quoted local part', '"victim@gmail.com"@acme.test'],
    ['source route', '@gmail.com:victim@acme.test'],
    ['address literal', 'victim@[127.0.0.1]'],
    ['IPv6 literal', 'victim@[IPv6:::1]'],
    ['no domain', 'victim@'],
    ['no local part', '@acme.test'],
    ['no @', 'victim'],
    ['single-label domain', 'victim@localhost'],
    ['leading dot', '.victim@acme.test'],
    ['double dot', 'vic..tim@acme.test'],
    ['CRLF injection', 'victim@acme.test\r\nRCPT TO:<x@y.z>'],
    ['space', 'vic tim@acme.test'],
    ['underscore domain label edge', 'a@-acme.test'],
  ];
  for (const [name, input] of refused) {
    it(`when given a ${name} (${JSON.stringify(input)}), then it is refused`, () => {
      assert.equal(splitPlainAddress(input), null);
    });
  }
});
