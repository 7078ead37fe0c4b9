# frozen_string_literal: true

# Fork protection (api.md §11) in cluster mode, for spec/integration/cluster_spec.rb: the
# master opens a Sequel SQLite database (DB_PATH) before `start` and queries it; the workers
# forked afterwards query it in their handlers. Environment: PORT, DB_PATH.
#
# stderr lines (besides iodine's own):
#   "db PID master rows=N pool=N"       in the master before start
#   "db PID EVENT pool=N"               in :before_fork, :enter_master and :enter_child (these
#                                       blocks run after iodine's own fork protection)
# HTTP:
#   /count   "PID rows=N pool=N" (a query in the worker)
#   /add     inserts a row; "PID rows=N"

require "iodine"
require "sequel"

DB = Sequel.sqlite(ENV.fetch("DB_PATH"))
DB.create_table?(:items) do
  primary_key :id
  String :name
end
3.times { |i| DB[:items].insert(name: "row #{i}") }

def db_note(line)
  $stderr.puts("db #{Process.pid} #{line}")
  $stderr.flush
end

db_note("master rows=#{DB[:items].count} pool=#{DB.pool.size}")

# Registered after the built-in hooks (lib/iodine registers them at require), so these run
# after them: what they see is what the fork protection left.
Iodine.on_state(:before_fork) { db_note("before_fork pool=#{DB.pool.size}") }
Iodine.on_state(:enter_master) { db_note("enter_master pool=#{DB.pool.size}") }
Iodine.on_state(:enter_child) { db_note("enter_child pool=#{DB.pool.size}") }

Iodine.listen(service: :http, address: "127.0.0.1", port: ENV.fetch("PORT"), handler: lambda do |env|
  case env["PATH_INFO"]
  when "/add"
    DB[:items].insert(name: "added by #{Process.pid}")
    [200, {}, ["#{Process.pid} rows=#{DB[:items].count}"]]
  else
    rows = DB[:items].count
    [200, {}, ["#{Process.pid} rows=#{rows} pool=#{DB.pool.size}"]]
  end
rescue StandardError => e
  [500, {}, ["#{Process.pid} #{e.class}: #{e.message}"]]
end)
Iodine.workers = 2
Iodine.threads = 2
Iodine.start
