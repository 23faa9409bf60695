/**
 * The webmail's HTML sanitiser (src/services/html-sanitizer.ts) against a catalogue of XSS and
 * tracking vectors: each one is shown to be gone from the output, while ordinary mail formatting,
 * links (opening in a new tab without an opener), cid: and data:image pictures survive and remote
 * images are reported as remote content.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { cleanCss, sanitizeMailHtml } from '../../src/services/html-sanitizer.js';

/** [name, input, patterns that must not appear in the output (case-insensitive)] */
const VECTORS: [string, string, RegExp[]][] = [
  ['script element', '<p>hi</p><script>alert(1)</script>', [/<script/i, /alert/]],
  ['script with entity-encoded payload in text', '<p>&lt;script&gt;alert(1)&lt;/script&gt;</p>', [/<script/i]],
  ['img onerror', '<img src="x" onerror="alert(1)">', [/onerror/i, /alert/]],
  ['onload on body', '<body onload="alert(1)"><p>x</p></body>', [/onload/i, /alert/]],
  ['onmouseover on a div', '<div onmouseover="alert(1)">x</div>', [/onmouseover/i]],
  ['javascript: link', '<a href="javascript:alert(1)">x</a>', [/javascript:/i]],
  ['javascript: link with entities and case', '<a href="&#106;ava&#x53;cript&colon;alert(1)">x</a>', [/script/i, /alert/]],
  ['javascript: link with whitespace', '<a href=" java\tscript:alert(1)">x</a>', [/script/i]],
  ['vbscript: link', '<a href="vbscript:msgbox(1)">x</a>', [/vbscript/i]],
  ['data:text/html link', '<a href="data:text/html;base64,PHNjcmlwdD5hbGVydCgxKTwvc2NyaXB0Pg==">x</a>', [/data:/i]],
  ['data:text/html image', '<img src="data:text/html,<script>alert(1)</script>">', [/data:text/i, /<script/i]],
  ['data:image/svg+xml image', '<img src="data:image/svg+xml;base64,PHN2Zz4=">', [/svg/i]],
  ['iframe', '<iframe src="https://evil.example/"></iframe>', [/<iframe/i, /evil/]],
  ['iframe with fallback markup', '<iframe><img src=x onerror=alert(1)></iframe>', [/<iframe/i, /onerror/i]],
  ['object', '<object data="https://evil.example/x.swf"></object>', [/<object/i, /evil/]],
  ['embed', '<embed src="https://evil.example/x.swf">', [/<embed/i, /evil/]],
  ['form with input and button', '<form action="https://evil.example/"><input name="p"><button>go</button></form>', [/<form/i, /<input/i, /<button/i, /evil/]],
  ['svg with script', '<svg><script>alert(1)</script><circle r="1"/></svg>', [/<svg/i, /<script/i, /alert/]],
  ['svg onload', '<svg onload="alert(1)"></svg>', [/<svg/i, /onload/i]],
  ['math with href', '<math href="javascript:alert(1)"><mi>x</mi></math>', [/<math/i, /javascript/i]],
  ['style url() in attribute', '<div style="background:url(https://track.example/p.gif)">x</div>', [/url\(/i, /track\.example/]],
  ['style url() escaped in attribute', '<div style="background:u\\72l(https://track.example/p.gif)">x</div>', [/url\(/i, /u\\72l/i]],
  ['style image-set()', '<div style="background-image:image-set(&quot;https://track.example/p.gif&quot; 1x)">x</div>', [/image-set\(/i]],
  ['style expression()', '<div style="width:expression(alert(1))">x</div>', [/expression\(/i]],
  ['style expression() split by a comment', '<div style="width:exp/**/ression(alert(1))">x</div>', [/expression\(/i, /exp\/\*\*\/ression/i]],
  ['style behavior', '<div style="behavior:url(x.htc)">x</div>', [/behavior\s*:/i, /url\(/i]],
  ['style -moz-binding', '<div style="-moz-binding:url(https://evil.example/x.xml#x)">x</div>', [/-moz-binding\s*:/i, /url\(/i]],
  ['<style> @import', '<style>@import url(https://evil.example/x.css); p{color:red}</style>', [/@import/i, /url\(/i]],
  ['<style> @import with a string', '<style>@import "https://evil.example/x.css";</style>', [/@import/i, /evil/]],
  ['<style> url()', '<style>body{background:url("https://track.example/p.gif")}</style>', [/url\(/i]],
  ['<style> expression()', '<style>p{width:expression(alert(1))}</style>', [/expression\(/i]],
  ['<style> escape that spells </style>', '<style>p{content:"\\3c/style\\3e<script>alert(1)</script>"}</style>', [/<script/i, /<\/style><script/i]],
  ['<style> @font-face', '<style>@font-face{font-family:x;src:url(https://evil.example/f.woff)}</style>', [/@font-face/i, /url\(/i]],
  ['meta refresh', '<meta http-equiv="refresh" content="0;url=https://evil.example/">', [/<meta/i, /refresh/i]],
  ['base href', '<base href="https://evil.example/"><a href="x">x</a>', [/<base/i, /evil/]],
  ['link stylesheet', '<link rel="stylesheet" href="https://evil.example/x.css">', [/<link/i, /evil/]],
  ['img srcset', '<img src="cid:a" srcset="https://track.example/p.gif 2x">', [/srcset/i, /track/]],
  ['background attribute on body and td', '<body background="https://track.example/b.gif"><table><tr><td background="https://track.example/c.gif">x</td></tr></table></body>', [/background=/i, /track/]],
  ['protocol-relative image', '<img src="//track.example/p.gif">', [/track/]],
  ['relative link (would resolve against our origin)', '<a href="/api/auth/logout">x</a>', [/href/i]],
  ['noscript mutation', '<noscript><p title="</noscript><img src=x onerror=alert(1)>"></noscript>', [/onerror/i]],
  ['textarea mutation', '<textarea></textarea><img src=x onerror=alert(1)></textarea>', [/onerror/i, /<textarea/i]],
  ['formaction on a button', '<button formaction="javascript:alert(1)">x</button>', [/formaction/i, /<button/i]],
  ['target/rel spoofed on a link', '<a href="https://ok.example/" target="_self" rel="opener">x</a>', [/_self/, /rel="opener"/]],
];

describe('sanitizeMailHtml: XSS and tracking vectors', () => {
  for (const [name, input, forbidden] of VECTORS) {
    it(`when the HTML has ${name}, then it is gone`, () => {
      const { html } = sanitizeMailHtml(input);
      for (const pattern of forbidden) assert.doesNotMatch(html, pattern, `${name}: ${html}`);
    });
  }
});

describe('sanitizeMailHtml: what stays', () => {
  it('when a message has ordinary formatting, then it is kept', () => {
    const input = '<table width="100%" cellpadding="4"><tr><td align="center" bgcolor="#eee"><b>Hi</b> <i>there</i> <font color="red">!</font></td></tr></table><ul><li>one</li></ul><blockquote>q</blockquote>';
    assert.equal(sanitizeMailHtml(input).html, input);
  });

  it('when a message links out, then the link opens in a new tab without an opener', () => {
    const { html } = sanitizeMailHtml('<a href="https://example.org/a?b=1&amp;c=2">x</a> <a href="mailto:bob@example.org">m</a>');
    assert.equal(html, '<a href="https://example.org/a?b=1&amp;c=2" target="_blank" rel="noopener noreferrer">x</a> <a href="mailto:bob@example.org" target="_blank" rel="noopener noreferrer">m</a>');
  });

  it('when images are cid: or data:image, then they stay and are not remote content', () => {
    const input = '<img src="cid:logo@example" alt="logo"><img src="data:image/png;base64,iVBORw0KGgo=">';
    const out = sanitizeMailHtml(input);
    assert.match(out.html, /src="cid:logo@example"/);
    assert.match(out.html, /src="data:image\/png;base64,iVBORw0KGgo="/);
    assert.equal(out.remoteContent, false);
  });

  it('when an image is on the web, then it stays and is reported as remote content', () => {
    const out = sanitizeMailHtml('<p>x</p><img src="https://cdn.example/p.png">');
    assert.match(out.html, /src="https:\/\/cdn\.example\/p\.png"/);
    assert.equal(out.remoteContent, true);
  });

  it('when styles are harmless, then they are kept', () => {
    assert.match(sanitizeMailHtml('<p style="color: red; font-weight: bold">x</p>').html, /style="color:red;font-weight:bold"/);
    assert.equal(sanitizeMailHtml('<style>p { color: red }</style>').html, '<style>p { color: red }</style>');
  });

  it('when the head holds a title, then its text does not leak into the body', () => {
    assert.equal(sanitizeMailHtml('<html><head><title>Secret title</title></head><body><p>b</p></body></html>').html, '<p>b</p>');
  });
});

describe('cleanCss', () => {
  const cases: [string, string][] = [
    ['color: red', 'color: red'],
    ['background: url(x)', 'background: none'],
    ['background: URL ( "a)b" )', 'background: none'],
    ['background: image-set("x" 1x)', 'background: blocked("x" 1x)'],
    ['@import "x.css"; p{}', ' p{}'],
    ['\\40 import "x.css";', ''],
    ['a/* c */b', 'ab'],
    ['behavior: x', 'x-blocked: x'],
  ];
  for (const [input, expected] of cases) {
    it(`when the CSS is ${JSON.stringify(input)}, then it becomes ${JSON.stringify(expected)}`, () => {
      assert.equal(cleanCss(input), expected);
    });
  }
});
