# frozen_string_literal: true

require "spec_helper"
require_relative "../support/framework_apps"

# A real modular Sinatra 3 app (spec/support/apps/sinatra_app.ru) served by `exe/iodine`,
# spoken to with Net::HTTP, raw sockets and curl. Sinatra's `stream` on a threaded server
# iterates in the server's `each` (no EventMachine): each `out << data` must reach the client
# as it is written, and a client that leaves must end the iteration. Every example also
# checks that the server (and Sinatra) logged no error it did not expect.
RSpec.describe "A Sinatra app on iodine" do
  include FrameworkApps

  before(:all) do
    missing = FrameworkApps.load_error(%w[sinatra/base])
    skip "ruby-sinatra not installed (bin/setup installs it): #{missing}" if missing

    @server = ServerProcess.new(["-t", "4", "-w", "1", app_path("sinatra_app.ru")])
  end
  after(:all) { @server&.stop }

  let(:port) { @server.port }

  include_context "a framework app's log stays clean"

  def post(path, body, content_type)
    Net::HTTP.start("127.0.0.1", port, read_timeout: 10, open_timeout: 5) do |http|
      http.request(Net::HTTP::Post.new(path, "Content-Type" => content_type), body)
    end
  end

  def ticker_state
    JSON.parse(http_get(port, "/ticker-state").body)
  end

  describe "routes" do
    it "answers a plain route (200, text/html, Content-Length)" do
      res = http_get(port, "/")
      expect(res.code).to eq("200")
      expect(res["Content-Type"]).to eq("text/html;charset=utf-8")
      expect(res.body).to match(/\AHello from Sinatra 3\.\d+\.\d+\z/)
      expect(res["Content-Length"]).to eq(res.body.bytesize.to_s)
    end

    it "answers HEAD with the headers of a GET (Content-Length included) and no body" do
      raw = raw_request(port, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
      expect(raw).to start_with("HTTP/1.1 200")
      expect(raw).to end_with("\r\n\r\n")
      expect(raw[/^content-length: (\d+)\r$/i, 1]).to eq(http_get(port, "/").body.bytesize.to_s)
    end

    it "passes route and query params (percent-decoded, UTF-8)" do
      expect(http_get(port, "/hello/bob?greeting=Hi").body).to eq("Hi, bob!")
      expect(http_get(port, "/hello/J%C3%BCrgen?greeting=Gr%C3%BC%C3%9F+dich").body.force_encoding("UTF-8"))
        .to eq("Grüß dich, Jürgen!")
      expect(http_get(port, "/hello/ann").body).to eq("Hello, ann!")
    end

    it "answers JSON with content_type :json" do
      res = http_get(port, "/api/items/7?x=1&y=two")
      expect(res.code).to eq("200")
      expect(res["Content-Type"]).to eq("application/json")
      expect(JSON.parse(res.body)).to eq("framework" => "sinatra", "id" => "7", "query" => { "x" => "1", "y" => "two" })
    end

    it "reads a JSON request body and answers 201" do
      payload = { "name" => "widget", "list" => [1, 2, { "deep" => true }] }
      res = post("/api/items", JSON.generate(payload), "application/json")
      expect(res.code).to eq("201")
      body = JSON.parse(res.body)
      expect(body["echo"]).to eq(payload)
      expect(body["length"]).to eq(JSON.generate(payload).bytesize.to_s)
    end

    it "reads a form body sent by curl" do
      out = IO.popen(["curl", "-sS", "-i", "--max-time", "10", "--data-urlencode", "note=a&b c", "-d", "n=1",
                      "http://127.0.0.1:#{port}/api/items"], err: %i[child out], &:read)
      expect(out).to start_with("HTTP/1.1 201")
      body = JSON.parse(out.split("\r\n\r\n", 2).last)
      expect(body["echo"]).to eq("note" => "a&b c", "n" => "1")
      expect(body["content_type"]).to eq("application/x-www-form-urlencoded")
    end

    it "sends a halt's status, headers and body" do
      res = http_get(port, "/forbidden")
      expect(res.code).to eq("403")
      expect(res["X-Halted"]).to eq("yes")
      expect(res.body).to eq("halted: forbidden")
    end

    it "answers halt 404 and unknown routes with the not_found handler's page" do
      res = http_get(port, "/missing")
      expect(res.code).to eq("404")
      expect(res.body).to eq("sinatra_app: nothing at /missing")
      res = http_get(port, "/no/such/page")
      expect(res.code).to eq("404")
      expect(res.body).to eq("sinatra_app: nothing at /no/such/page")
      expect(res["X-Cascade"]).to eq("pass")
    end

    it "turns a route that raises into the error handler's 500 and keeps serving",
       log_allows: [/ - ArgumentError - deliberate boom from the Sinatra app:/] do
      res = http_get(port, "/boom")
      expect(res.code).to eq("500")
      expect(res.body).to eq("sinatra_app: something went wrong (ArgumentError)")
      expect(@server.log_with("deliberate boom")).to include("ArgumentError - deliberate boom from the Sinatra app")
      expect(@server.log).not_to include("Iodine caught an unprotected exception")
      expect(http_get(port, "/").code).to eq("200")
    end
  end

  describe "stream" do
    markers = Array.new(5) { |i| "chunk #{i}\n" }

    it "sends each `out <<` as it is written (200, chunked, incremental, all 5)" do
      res = timed_get(port, "/stream", markers: markers, timeout: 10)
      expect(res.status).to eq(200), "status #{res.status.inspect}; got:\n#{res.raw}"
      expect(res.headers["transfer-encoding"]).to eq("chunked")
      expect(res.headers["content-type"]).to eq("text/plain;charset=utf-8")
      expect(res.body).to eq(markers.join)
      expect(res.raw).to end_with("0\r\n\r\n")
      expect(res.arrivals.keys).to eq(markers)
      first = res.arrivals[markers.first]
      last = res.arrivals[markers.last]
      expect(last).to be > 1.0 # the block sleeps 0.3 s four times
      expect(first).to be < last - 0.8, "chunks arrived at #{res.arrivals.values.map { |t| t.round(2) }} s: not streamed"
      expect(res.arrivals.values).to eq(res.arrivals.values.sort)
    end

    it "runs 4 streams at once on 4 threads" do
      started = FrameworkApps.now
      results = Array.new(4) { Thread.new { timed_get(port, "/stream", markers: markers, timeout: 10) } }.map(&:value)
      expect(results.map(&:status)).to eq([200] * 4)
      expect(results.map(&:body)).to eq([markers.join] * 4)
      expect(FrameworkApps.now - started).to be < 2.5 # one stream takes 1.2 s; in turn, 4.8 s
    end

    it "ends a keep_open stream's loop when its client leaves (the write raises), and keeps serving" do
      earlier = ticker_state
      socket = TCPSocket.new("127.0.0.1", port)
      socket.write("GET /ticker HTTP/1.1\r\nHost: x\r\n\r\n")
      got, = read_for(socket, 5) { |bytes| bytes.scan(/tick \d+\n/).size >= 3 }
      expect(got).to start_with("HTTP/1.1 200")
      expect(got.scan(/tick \d+\n/).size).to be >= 3
      socket.close
      ended = eventually(5) { ticker_state["ended"] > earlier["ended"] }
      expect(ended).to be(true), "the stream still runs 5 s after its client left: #{ticker_state}"
      state = ticker_state
      expect(state["error"]).to eq("Iodine::Base::ClientGone")
      sleep 0.3
      expect(ticker_state["ticks"]).to eq(state["ticks"]) # no more writes
      codes, failures = concurrent_gets(port, clients: 4, requests: 5)
      expect(failures).to be_empty
      expect(codes.uniq).to eq(["200"])
    end
  end
end
