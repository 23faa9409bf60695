/**
 * sanitizeMailHtml(): the HTML body of a received message made safe to show in the webmail
 * (WebmailService.getMessage; the SPA renders it in a sandboxed iframe without scripts, under its
 * own CSP, so this is the first of several walls, not the only one).
 *
 * An allowlist (sanitize-html): formatting, tables, lists, images and links only. Everything that
 * can run code, submit, navigate by itself or change how URLs resolve is gone: script, iframe,
 * object, embed, form and its controls, meta, link, base, svg/math; on* attributes; srcset and the
 * `background` attribute. URLs: links may be http, https, mailto or cid; images http, https, cid
 * or data:image/(png|gif|jpeg|webp|bmp); anything else (javascript:, vbscript:, data:text/html,
 * relative or protocol-relative URLs, which in a srcdoc iframe would resolve against our own
 * origin) loses the attribute. Links open in a new tab without an opener.
 *
 * CSS (style attributes and <style> text) is decoded first (comments, backslash escapes), then
 * loses @import and every function that fetches or runs something (url(), image-set(),
 * expression(), ...) and the IE/Gecko binding properties: a remote background would track the
 * reader, and the client only guards <img> with its "Show images" switch. `cid:` images are left
 * as they are: the client swaps them for the attachment with that Content-ID.
 *
 * `remoteContent` says whether the result still loads anything from the network (http(s) images),
 * so the client can block them until the reader asks.
 */
import sanitizeHtml from 'sanitize-html';

export interface SanitizedHtml {
  html: string;
  remoteContent: boolean;
}

const ALLOWED_TAGS = [
  'a', 'abbr', 'address', 'b', 'bdi', 'bdo', 'big', 'blockquote', 'br', 'caption', 'center', 'cite', 'code', 'col', 'colgroup',
  'dd', 'del', 'dfn', 'div', 'dl', 'dt', 'em', 'font', 'h1', 'h2', 'h3', 'h4', 'h5', 'h6', 'hr', 'i', 'img', 'ins', 'kbd', 'li',
  'mark', 'ol', 'p', 'pre', 'q', 's', 'samp', 'small', 'span', 'strike', 'strong', 'style', 'sub', 'sup', 'table', 'tbody', 'td',
  'tfoot', 'th', 'thead', 'tr', 'tt', 'u', 'ul', 'var', 'wbr',
];

const CELL = ['align', 'valign', 'width', 'height', 'bgcolor', 'colspan', 'rowspan', 'nowrap'];

const ALLOWED_ATTRIBUTES: Record<string, string[]> = {
  '*': ['style', 'title', 'dir', 'lang', 'align', 'class'],
  a: ['href', 'name', 'target', 'rel'],
  img: ['src', 'alt', 'width', 'height', 'border', 'hspace', 'vspace'],
  font: ['color', 'face', 'size'],
  table: ['width', 'height', 'border', 'cellpadding', 'cellspacing', 'bgcolor', 'align'],
  td: CELL,
  th: CELL,
  tr: ['align', 'valign', 'bgcolor', 'height'],
  col: ['span', 'width', 'align', 'valign'],
  colgroup: ['span', 'width', 'align', 'valign'],
  ol: ['start', 'type', 'reversed'],
  ul: ['type'],
  li: ['value'],
  blockquote: ['cite', 'type'],
  hr: ['width', 'size', 'noshade', 'color'],
};

const LINK_URL = /^(?:https?:|mailto:|cid:)/i;
const IMAGE_URL = /^(?:https?:|cid:|data:image\/(?:png|gif|jpe?g|webp|bmp)[;,])/i;
const REMOTE_URL = /^https?:/i;

/** url() with its argument (quoted or not): the address goes too. */
const CSS_URL = /url\s*\(\s*(?:"[^"]*"?|'[^']*'?|[^)]*)\s*\)?/gi;
/** CSS functions that fetch a resource or run code, and the legacy properties that bind behaviour. */
const CSS_FETCH_OR_RUN = /(?:url|(?:-webkit-)?image-set|image|(?:-webkit-)?cross-fade|element|expression|paint|src)\s*\(/gi;
const CSS_BINDING = /(?:behavior|-moz-binding|-ms-behavior)\s*:/gi;
const CSS_AT_RULE = /@(?:import|namespace|charset|font-face|document|-moz-document)\b[^;{]*(?:;|\{[^}]*\}?)?/gi;

export function sanitizeMailHtml(html: string): SanitizedHtml {
  let remoteContent = false;
  const cleaned = sanitizeHtml(html, {
    allowedTags: ALLOWED_TAGS,
    allowedAttributes: ALLOWED_ATTRIBUTES,
    allowedSchemes: ['http', 'https', 'mailto', 'cid'],
    allowedSchemesByTag: { img: ['http', 'https', 'cid', 'data'] },
    allowedSchemesAppliedToAttributes: ['href', 'src', 'cite'],
    allowProtocolRelative: false,
    // <style> is allowed: its text is cleaned below (cleanStyleElements) before it is returned
    allowVulnerableTags: true,
    nonTextTags: ['script', 'textarea', 'option', 'noscript', 'title', 'xmp', 'noembed', 'noframes', 'template'],
    disallowedTagsMode: 'discard',
    transformTags: {
      '*': (tagName, attribs) => {
        if (attribs.style !== undefined) attribs.style = cleanCss(attribs.style);
        return { tagName, attribs };
      },
      a: (tagName, attribs) => {
        const href = (attribs.href ?? '').trim();
        const out: Record<string, string> = { ...attribs, target: '_blank', rel: 'noopener noreferrer' };
        if (LINK_URL.test(href)) out.href = href;
        else delete out.href;
        return { tagName, attribs: out };
      },
      img: (tagName, attribs) => {
        const src = (attribs.src ?? '').trim();
        const out: Record<string, string> = { ...attribs };
        if (IMAGE_URL.test(src)) {
          out.src = src;
          if (REMOTE_URL.test(src)) remoteContent = true;
        } else {
          delete out.src;
        }
        return { tagName, attribs: out };
      },
    },
  });
  return { html: cleanStyleElements(cleaned), remoteContent };
}

/**
 * The text of every <style> element of sanitize-html's output, cleaned. In that output a literal
 * `<style>` can only be an element (text and attribute values are escaped) and its text cannot
 * contain `</style` (the parser ended the element there), so the match is exact.
 */
function cleanStyleElements(html: string): string {
  return html.replace(/<style>([\s\S]*?)<\/style>/g, (_all, css: string) => `<style>${cleanCss(css)}</style>`);
}

/** CSS with comments and escapes decoded away, then without anything that loads or runs. */
export function cleanCss(css: string): string {
  let text = decodeCss(css);
  // a decoded `<` could end the <style> element it is put back into
  text = text.replace(/</g, '');
  for (let previous = ''; previous !== text; ) {
    previous = text;
    text = text.replace(CSS_AT_RULE, '').replace(CSS_URL, 'none').replace(CSS_FETCH_OR_RUN, 'blocked(').replace(CSS_BINDING, 'x-blocked:');
  }
  return text;
}

function decodeCss(css: string): string {
  return css
    .replace(/\/\*[\s\S]*?(?:\*\/|$)/g, '')
    .replace(/\\([0-9a-fA-F]{1,6})[ \t\n\r\f]?/g, (_all, hex: string) => {
      const code = parseInt(hex, 16);
      return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? String.fromCodePoint(code) : '';
    })
    .replace(/\\(?:\r\n|[\n\r\f])/g, '')
    .replace(/\\(.)/g, '$1')
    .replace(/\\$/, '');
}
