# frozen_string_literal: true

require "rack"

# What the realtime apps' handlers saw, per connection id (the `id` query parameter of the
# upgrade request): GET /events?id=ID answers one line per event, in order. Each event also
# goes to stderr (the server log) as "event ID: LINE", for what happens while the server
# shuts down and can no longer answer. Requests without an id log nothing.
module RealtimeLog
  LOCK = Mutex.new
  LINES = Hash.new { |hash, id| hash[id] = [] }

  module_function

  def add(id, line)
    return unless id

    LOCK.synchronize { LINES[id] << line }
    $stderr.puts("event #{id}: #{line}")
  end

  def lines(id)
    LOCK.synchronize { LINES.key?(id) ? LINES[id].dup : [] }
  end

  def params(env)
    Rack::Utils.parse_query(env["QUERY_STRING"].to_s)
  end

  # The answer to GET /workers: "ALIVE/POOL", the Ruby worker threads alive and the pool's
  # size (the specs check that no unhappy path cost the server a worker).
  def workers
    pool = Iodine::Base::Runner.pool&.size || 0
    [200, { "content-type" => "text/plain" }, ["#{Iodine::Base.workers_alive}/#{pool}"]]
  end

  # The answer to GET /events?id=ID.
  def response(env)
    [200, { "content-type" => "text/plain" }, [lines(params(env)["id"]).join("\n")]]
  end
end
