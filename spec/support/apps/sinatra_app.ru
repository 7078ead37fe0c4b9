# frozen_string_literal: true

# A modular Sinatra 3 app served by `exe/iodine` (spec/integration/sinatra_spec.rb).
#   GET  /                      "Hello from Sinatra <version>" (text/html)
#   GET  /hello/:name?greeting=G   "<G or Hello>, <name>!" (route and query params)
#   GET  /api/items/:id         JSON (content_type :json)
#   POST /api/items             a form or JSON body, echoed back as JSON with 201
#   GET  /missing               halt 404 (Sinatra then renders the not_found handler's page)
#   GET  /forbidden             halt 403 with a header and a body of its own
#   anything unknown            the not_found handler's page (404)
#   GET  /boom                  raises: the error handler's 500 page
#   GET  /stream                stream: 5 chunks "chunk N\n", 0.3 s apart
#   GET  /ticker                stream(:keep_open) writing "tick N\n" every 0.1 s until the
#                               stream is closed: on a threaded server, until a write raises
#                               because the client left
#   GET  /ticker-state          JSON: tickers started and ended, ticks written, the class of
#                               the exception that ended the last one
require "json"
require "sinatra/base"

TICKER = { "started" => 0, "ended" => 0, "ticks" => 0, "error" => nil }
TICKER_LOCK = Mutex.new

class SinatraApp < Sinatra::Base
  set :environment, :production
  set :show_exceptions, false
  set :raise_errors, false
  set :logging, false

  get "/" do
    "Hello from Sinatra #{Sinatra::VERSION}"
  end

  get "/hello/:name" do
    "#{params["greeting"] || "Hello"}, #{params["name"]}!"
  end

  get "/api/items/:id" do
    content_type :json
    JSON.generate("framework" => "sinatra", "id" => params["id"], "query" => request.GET)
  end

  post "/api/items" do
    content_type :json
    payload = if request.media_type == "application/json"
                JSON.parse(request.body.read)
              else
                request.POST
              end
    status 201
    JSON.generate("echo" => payload, "content_type" => request.media_type, "length" => request.content_length)
  end

  get "/missing" do
    halt 404, "halted: no such item" # the not_found handler still renders the body
  end

  get "/forbidden" do
    halt 403, { "X-Halted" => "yes" }, "halted: forbidden"
  end

  get "/boom" do
    raise ArgumentError, "deliberate boom from the Sinatra app"
  end

  get "/stream" do
    content_type "text/plain"
    stream do |out|
      5.times do |i|
        sleep 0.3 if i.positive?
        out << "chunk #{i}\n"
      end
    end
  end

  get "/ticker" do
    content_type "text/plain"
    TICKER_LOCK.synchronize { TICKER["started"] += 1 }
    stream(:keep_open) do |out|
      until out.closed?
        out << "tick #{TICKER_LOCK.synchronize { TICKER["ticks"] += 1 }}\n"
        sleep 0.1
      end
    rescue Exception => e # rubocop:disable Lint/RescueException - recorded, then re-raised
      TICKER_LOCK.synchronize { TICKER["error"] = e.class.name }
      raise
    ensure
      TICKER_LOCK.synchronize { TICKER["ended"] += 1 }
    end
  end

  get "/ticker-state" do
    content_type :json
    TICKER_LOCK.synchronize { JSON.generate(TICKER) }
  end

  not_found do
    "sinatra_app: nothing at #{request.path_info}"
  end

  error do
    "sinatra_app: something went wrong (#{env["sinatra.error"].class})"
  end
end

run SinatraApp
