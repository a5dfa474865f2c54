import { defineEvent, defineSchema, sql } from 'tidelog'

/** Synced items and a local (per-tab) ui table: what the tab tests need to tell the owner's local events from its synced ones. */
export const itemsUiSchema = defineSchema({
  tables: {
    items: sql`CREATE TABLE items (id TEXT PRIMARY KEY, value INTEGER NOT NULL)`,
    ui: sql`CREATE TABLE ui (k TEXT PRIMARY KEY, v TEXT NOT NULL)`,
  },
  events: {
    set: defineEvent<{ id: string; value: number }>({
      materialize: ({ id, value }) => sql`INSERT OR REPLACE INTO items (id, value) VALUES (${id}, ${value})`,
    }),
    uiSet: defineEvent<{ k: string; v: string }>({ local: true, materialize: ({ k, v }) => sql`INSERT OR REPLACE INTO ui (k, v) VALUES (${k}, ${v})` }),
  },
})
