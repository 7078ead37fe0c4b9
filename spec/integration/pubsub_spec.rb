# frozen_string_literal: true

require "spec_helper"
require "open3"
require "json"

# Process-wide pub/sub (Iodine.subscribe / unsubscribe / publish, Iodine::PubSub engines) in a
# real server process that stops itself.
RSpec.describe "pub/sub in one process" do
  def run_script(body, timeout: 15)
    script = <<~RUBY
      require "iodine"
      require "json"
      Iodine.listen(service: :http, port: #{ServerProcess.free_port}, address: "127.0.0.1", handler: ->(_) { [200, {}, ["ok"]] })
      Iodine.threads = 2
      Iodine.verbosity = 2
      LOG = Queue.new
      #{body}
      Iodine.start
      out = []
      out << LOG.pop until LOG.empty?
      puts JSON.generate(out)
    RUBY
    out, err, status = Timeout.timeout(timeout) { Open3.capture3(RbConfig.ruby, "-I#{ROOT}/lib", "-e", script) }
    expect(status.success?).to be(true), err
    JSON.parse(out.lines.last)
  end

  it "delivers to exact, pattern and handler subscriptions as binary Strings, on worker threads" do
    got = run_script(<<~RUBY)
      Iodine.subscribe("chat") { |ch, m| LOG << ["exact", ch, m, ch.encoding.to_s, m.encoding.to_s, Thread.current.name] }
      Iodine.subscribe(:"news.*", match: :redis) { |ch, m| LOG << ["pattern", ch, m] }
      Iodine.subscribe(to: "h", handler: ->(ch, m) { LOG << ["handler", ch, m] })
      Iodine.run do
        Iodine.publish("chat", "hello")
        Iodine.publish(:"news.sport", "goal")
        Iodine.publish("news", "not matched")
        Iodine.publish(to: "h", message: "hash form")
        Iodine.run_after(200) { Iodine.stop }
      end
    RUBY
    expect(got).to contain_exactly(
      ["exact", "chat", "hello", "ASCII-8BIT", "ASCII-8BIT", a_string_starting_with("iodine-worker-")],
      ["pattern", "news.sport", "goal"], ["handler", "h", "hash form"]
    )
  end

  it "replaces a subscription of the same name, and unsubscribe ends it" do
    got = run_script(<<~RUBY)
      Iodine.subscribe("c") { |_, m| LOG << "old:" + m }
      Iodine.subscribe("c") { |_, m| LOG << "new:" + m }
      Iodine.run do
        Iodine.publish("c", "1")
        Iodine.run_after(50) do
          LOG << Iodine.unsubscribe("c").to_s << Iodine.unsubscribe(:c).to_s
          Iodine.publish("c", "2")
          Iodine.run_after(100) { Iodine.stop }
        end
      end
    RUBY
    expect(got).to eq(%w[new:1 true false])
  end

  it "routes through engines: false and PROCESS stay here, SIBLINGS reaches no one, a Ruby engine gets the hooks" do
    got = run_script(<<~RUBY)
      class Recorder < Iodine::PubSub::Engine
        def subscribe(ch, match) = LOG << ["sub", ch, match]
        def unsubscribe(ch, match) = LOG << ["unsub", ch, match]
        def publish(ch, m) = LOG << ["pub", ch, m]
      end
      engine = Recorder.new
      Iodine.subscribe("a") { |_, m| LOG << ["got", m] }
      Iodine::PubSub.attach(engine)
      Iodine.subscribe("p*", match: :redis) { |_, m| LOG << ["got-p", m] }
      Iodine.run do
        Iodine.publish("a", "process", false)
        Iodine.publish("a", "siblings", Iodine::PubSub::SIBLINGS)
        Iodine.publish("a", "engine", engine)
        Iodine::PubSub.default = engine
        Iodine.publish("a", "default")
        Iodine::PubSub.default = nil
        Iodine.unsubscribe("p*")
        Iodine.run_after(150) { Iodine.stop }
      end
    RUBY
    expect(got).to contain_exactly(
      ["sub", "a", nil], ["sub", "p*", true], ["got", "process"], ["pub", "a", "engine"],
      ["pub", "a", "default"], ["unsub", "p*", true]
    )
  end

  it "logs a subscriber that raises, still delivers to the others, and heals a worker a subscriber killed" do
    got = run_script(<<~RUBY)
      Iodine.subscribe("x") { |_, m| raise "subscriber boom" if m == "1"; LOG << "x:" + m }
      Iodine.subscribe("x*", match: :redis) { |_, m| LOG << "p:" + m }
      Iodine.subscribe("k") { |_, _| Thread.current.kill }
      Iodine.run do
        Iodine.publish("x", "1")
        Iodine.publish("k", "die")
        Iodine.run_after(100) do
          Iodine.publish("x", "2")
          Iodine.run_after(100) { LOG << "workers:" + Iodine::Base.workers_alive.to_s; Iodine.stop }
        end
      end
    RUBY
    expect(got).to contain_exactly("p:1", "x:2", "p:2", "workers:2")
  end

  it "keeps global subscriptions across a second start in the same process, and drops stopped timers" do
    got = run_script(<<~RUBY)
      Iodine.subscribe("s") { |_, m| LOG << m }
      Iodine.run_every(10) { } # stopped by the first shutdown, never again
      Iodine.run { Iodine.publish("s", "first"); Iodine.run_after(100) { Iodine.stop } }
      Iodine.start
      Iodine.run { Iodine.publish("s", "second"); Iodine.run_after(100) { Iodine.stop } }
    RUBY
    expect(got).to eq(%w[first second])
  end

  it "validates its arguments" do
    got = run_script(<<~RUBY)
      [-> { Iodine.publish("a", nil) }, -> { Iodine.publish("a", 1) }, -> { Iodine.subscribe("a") },
       -> { Iodine.subscribe(1) {} }, -> { Iodine.subscribe {} }, -> { Iodine.subscribe("a", {}, 3) {} },
       -> { Iodine::PubSub.default = 3 }].each do |call|
        call.call
        LOG << "none"
      rescue ArgumentError, TypeError => e
        LOG << "\#{e.class}: \#{e.message}"
      end
      LOG << Iodine.publish("nobody", "listens").to_s
      Iodine.run { Iodine.stop }
    RUBY
    expect(got).to eq([
      "ArgumentError: message is required.", "TypeError: message must be a String",
      "ArgumentError: block or :handler required for local subscriptions.",
      "TypeError: channel must be a String or Symbol",
      "ArgumentError: a target (:to) subject / stream / channel is required.",
      "ArgumentError: wrong number of arguments (given 3, expected 1..2)",
      "TypeError: not a valid engine", "true"
    ])
  end
end
