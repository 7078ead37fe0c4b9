# frozen_string_literal: true

# GET /trickle streams an `each` body of 40 chunks of 1000 bytes, 0.05 s apart (40,000
# bytes in all); /workers answers Iodine::Base.workers_alive; anything else answers "ok".
class Trickle
  CHUNK = ("t" * 1000).freeze

  def each
    40.times do
      yield CHUNK
      sleep 0.05
    end
  end
end

app = lambda do |env|
  case env["PATH_INFO"]
  when "/trickle"
    [200, { "content-type" => "text/plain" }, Trickle.new]
  when "/workers"
    alive = Iodine::Base.respond_to?(:workers_alive) ? Iodine::Base.workers_alive.to_s : "unknown"
    [200, { "content-type" => "text/plain" }, [alive]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
