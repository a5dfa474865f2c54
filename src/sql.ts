/** A SQL statement with its bound parameters; made by the `sql` tag. */
export interface SqlFragment {
  readonly sql: string
  readonly params: readonly unknown[]
}

/**
 * Tagged template for SQL: every interpolation becomes a bound `?` parameter,
 * never spliced text, so args can never inject SQL.
 * @example sql`UPDATE todos SET text = ${text} WHERE id = ${id}`
 */
export function sql(strings: TemplateStringsArray, ...values: unknown[]): SqlFragment {
  return { sql: strings.join('?'), params: values }
}

export function isSqlFragment(value: unknown): value is SqlFragment {
  return typeof value === 'object' && value !== null && typeof (value as SqlFragment).sql === 'string' && Array.isArray((value as SqlFragment).params)
}
