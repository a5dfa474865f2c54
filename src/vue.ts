import { effect, type ReadonlySignal } from '@preact/signals-core'
import { getCurrentScope, onScopeDispose, type Ref, shallowRef } from 'vue'

/**
 * Turns a signal (a tidelog query, `store.sync.status`, any signals-core
 * signal) into a Vue `Ref` that follows it; call it in `setup()` or any
 * effect scope, where the subscription ends with the scope.
 * @example
 * const todos = useSignal(store.query<Todo>(sql`SELECT * FROM todos ORDER BY id`))
 * // template: <li v-for="t in todos" :key="t.id">{{ t.text }}</li>
 */
export function useSignal<T>(signal: ReadonlySignal<T>): Readonly<Ref<T>> {
  // shallowRef: query results are immutable arrays whose unchanged rows keep
  // their identity, so deep reactivity would only add proxies and cost.
  const ref = shallowRef(signal.peek()) as Ref<T>
  const dispose = effect(() => {
    ref.value = signal.value
  })
  // Outside a scope (module level) the ref lives as long as the page, like the store itself.
  if (getCurrentScope()) onScopeDispose(dispose)
  return ref
}
