# frozen_string_literal: true

require "spec_helper"
require "json"
require_relative "../support/h2_client"

# Iodine.stats and the -metrics page (Prometheus text, answered by Rust before the app).
RSpec.describe "Iodine.stats and -metrics" do
  STATS_APP = File.join(ServerProcess::APPS, "http2.ru")

  before(:all) { @server = ServerProcess.new(["-t", "1", "-w", "1", "-metrics", "/metrics", STATS_APP]) }
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  def stats
    JSON.parse(Net::HTTP.get(URI("http://127.0.0.1:#{port}/stats")))
  end

  def metrics
    Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/metrics"))
  end

  # The value of a metric line (`name{labels}` exactly as written).
  def metric(text, series)
    text[/^#{Regexp.escape(series)} (\d+)$/, 1]&.to_i
  end

  def ws_frame(opcode, payload)
    mask = "abcd".b
    masked = payload.b.bytes.each_with_index.map { |b, i| b ^ mask.getbyte(i % 4) }.pack("C*")
    [0x80 | opcode, 0x80 | payload.bytesize].pack("CC") + mask + masked
  end

  it "counts open connections by kind, requests by status class, bytes, the pool and pub/sub" do
    before = stats
    expect(before.keys).to include("connections", "requests", "bytes_in", "bytes_out", "pool", "pubsub", "pid")
    expect(before["pool"]).to include("threads" => 1, "busy" => 1) # this very request runs
    Net::HTTP.get_response(URI("http://127.0.0.1:#{port}/nothing-here")) # 404
    3.times { Net::HTTP.get(URI("http://127.0.0.1:#{port}/info")) }
    Net::HTTP.get(URI("http://127.0.0.1:#{port}/publish"))

    sse = H2Client.new(port)
    sse.request(1, "GET", "/sse", extra: [["accept", "text/event-stream"]])
    sse.next_frame(5) until (f = sse.next_frame(5)).nil? || f.type == :data
    ws = H2Client.new(port)
    ws.send_frame(:headers, H2Client::END_HEADERS, 1,
                  H2Client.block([[":method", "CONNECT"], [":protocol", "websocket"], [":scheme", "http"],
                                  [":path", "/ws"], [":authority", "localhost"], ["sec-websocket-version", "13"]]))
    ws.next_frame(5) until (f = ws.next_frame(5)).nil? || f.type == :data
    during = stats
    expect(during["connections"]).to include("sse" => 1, "websocket" => 1, "raw" => 0, "client" => 0)
    expect(during["connections"]["http"]).to be >= 2 # the two HTTP/2 connections (and this one's)
    expect(during["requests"]["2xx"] - before["requests"]["2xx"]).to be >= 6
    expect(during["requests"]["4xx"] - before["requests"]["4xx"]).to eq(1)
    expect(during["bytes_in"]).to be > before["bytes_in"]
    expect(during["bytes_out"]).to be > before["bytes_out"]
    expect(during["pubsub"]["published"] - before["pubsub"]["published"]).to eq(1)
    expect(during["pubsub"]["delivered"] - before["pubsub"]["delivered"]).to eq(1)
    expect(during["pubsub"]["channels"]).to be >= 1

    sse.close
    ws.close
    deadline = Time.now + 5
    sleep 0.05 until (after = stats)["connections"].values_at("sse", "websocket") == [0, 0] || Time.now > deadline
    expect(after["connections"]).to include("sse" => 0, "websocket" => 0)
  end

  it "serves Prometheus text on the -metrics path, not counted as a request, and not through the app" do
    first = metrics
    expect(first.code).to eq("200")
    expect(first["content-type"]).to start_with("text/plain; version=0.0.4")
    text = first.body
    expect(text).to include("# TYPE iodine_connections gauge", "# TYPE iodine_requests_total counter",
                            "# TYPE iodine_bytes_out_total counter", "# TYPE iodine_pool_threads gauge")
    ok = metric(text, 'iodine_requests_total{status="2xx"}')
    expect(metric(text, "iodine_pool_threads")).to eq(1)
    5.times { metrics }
    expect(metric(metrics.body, 'iodine_requests_total{status="2xx"}')).to eq(ok)
  end

  it "answers the metrics page while every Ruby thread is busy" do
    slow = Thread.new { Net::HTTP.get(URI("http://127.0.0.1:#{port}/slow?s=2")) }
    sleep 0.3 # the only Ruby thread sleeps in the app
    started = Process.clock_gettime(Process::CLOCK_MONOTONIC)
    text = metrics.body
    took = Process.clock_gettime(Process::CLOCK_MONOTONIC) - started
    expect(took).to be < 1.0
    expect(metric(text, "iodine_pool_busy")).to eq(1)
    expect(slow.value).to eq("slow")
  end

  it "sums a cluster's workers, each listed (and labelled on the metrics page)" do
    server = ServerProcess.new(["-t", "2", "-w", "2", "-metrics", "/metrics", STATS_APP])
    base = "http://127.0.0.1:#{server.port}"
    # New connections each: the kernel spreads them over the workers' sockets.
    40.times { Net::HTTP.get(URI("#{base}/info")) }
    sleep 0.7 # each worker writes its figures twice a second
    all = JSON.parse(Net::HTTP.get(URI("#{base}/stats")))
    expect(all["workers"].map { |w| w["slot"] }.sort).to eq([0, 1])
    expect(all["workers"].map { |w| w["pid"] }.uniq.size).to eq(2)
    expect(all["requests"]["2xx"]).to eq(all["workers"].sum { |w| w["requests"]["2xx"] })
    expect(all["requests"]["2xx"]).to be >= 40
    expect(all["pool"]["threads"]).to eq(4)
    text = Net::HTTP.get(URI("#{base}/metrics"))
    expect(metric(text, "iodine_pool_threads")).to eq(4)
    expect(metric(text, 'iodine_pool_threads{worker="0"}')).to eq(2)
    expect(metric(text, 'iodine_pool_threads{worker="1"}')).to eq(2)
    per_worker = [0, 1].sum { |w| metric(text, %(iodine_requests_total{worker="#{w}",status="2xx"})) }
    expect(metric(text, 'iodine_requests_total{status="2xx"}')).to eq(per_worker)
  ensure
    server&.stop
  end

  it "refuses a metrics path that isn't one" do
    out = `#{RbConfig.ruby} -I#{ROOT}/lib #{ServerProcess::EXE} -metrics metrics #{STATS_APP} 2>&1`
    expect($?.exitstatus).to eq(1)
    expect(out).to include("metrics must be a path starting with /")
  end
end
