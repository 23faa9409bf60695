/**
 * Our row ids are UUIDs. Services check a path id's form before querying, so a malformed id is
 * the same 404 as an unknown one and never reaches PostgreSQL as a uuid cast error.
 */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

export function isUuid(value: string): boolean {
  return UUID.test(value);
}
