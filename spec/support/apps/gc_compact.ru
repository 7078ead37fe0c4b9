# frozen_string_literal: true

# For the GC.compact regression spec: /compact moves every object Ruby can move
# (GC.verify_compaction_references), while WebSocket clients (subscribed to "room"), a
# repeating timer and cached JSON keys and Mustache templates stay in use around it.

# Each message comes back with a prefix; "publish:X" publishes X to every client instead.
module Echo
  def self.on_open(client)
    client.subscribe("room")
  end

  def self.on_message(client, data)
    if data.start_with?("publish:")
      Iodine.publish("room", "room:#{data.delete_prefix('publish:')}")
    else
      client.write("echo:#{data}")
    end
  end
end

$ticks = 0
Iodine.run_every(20) { $ticks += 1 }
VIEW = Iodine::Mustache.new(nil, "{{x}}-{{#y}}{{.}}{{/y}}")

run(lambda do |env|
  if env["rack.upgrade?"] == :websocket
    env["rack.upgrade"] = Echo
    next [0, {}, []]
  end
  case env["PATH_INFO"]
  when "/compact"
    GC.verify_compaction_references(double_heap: true, toward: :empty)
    [200, { "content-type" => "text/plain" }, ["compacted"]]
  when "/ticks"
    [200, { "content-type" => "text/plain" }, [$ticks.to_s]]
  when "/json"
    doc = Iodine::JSON.parse('{"alpha_key":[1,2.5],"beta_key":"c"}')
    [200, { "content-type" => "application/json" }, [Iodine::JSON.generate(doc)]]
  when "/mustache"
    [200, { "content-type" => "text/plain" }, [VIEW.render(x: 1, y: [1, 2])]]
  else
    [200, { "content-type" => "text/plain" }, ["ok"]]
  end
end)
