/** A SQL statement with its bound parameters; made by the `sql` tag. */
export interface SqlFragment {
  readonly sql: string
  readonly params: readonly unknown[]
}

/** The text of each template's call site (template strings arrays are frozen and the same every time). */
const texts = new WeakMap<TemplateStringsArray, string>()

/**
 * Tagged template for SQL: every interpolation becomes a bound `?` parameter,
 * never spliced text, so args can never inject SQL.
 * @example sql`UPDATE todos SET text = ${text} WHERE id = ${id}`
 */
export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  // one text per call site (its strings array is the same frozen object every time), so that a
  // materializer run per event neither joins nor hashes it again on the way to the statement cache
  let text = texts.get(strings)
  if (text === undefined) {
    text = strings.join('?')
    if (Object.isFrozen(strings)) texts.set(strings, text)
  }
  return { sql: text, params: values }
}

export function isSqlFragment(value: unknown): value is SqlFragment {
  return typeof value === 'object' && value !== null && typeof (value as SqlFragment).sql === 'string' && Array.isArray((value as SqlFragment).params)
}
