# frozen_string_literal: true

# GET /ticks?COUNT,INTERVAL streams COUNT chunks "tick N\n", one every INTERVAL seconds
# (defaults 34 and 0.3), through an `each` body; anything else answers "ok".
class Ticks
  def initialize(count, interval)
    @count = count
    @interval = interval
  end

  def each
    @count.times do |i|
      yield "tick #{i}\n"
      sleep @interval
    end
  end
end

app = lambda do |env|
  if env["PATH_INFO"] == "/ticks"
    count, interval = env["QUERY_STRING"].split(",")
    [200, { "content-type" => "text/plain" }, Ticks.new(Integer(count || 34), Float(interval || 0.3))]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end

run app
